//! Link settings for the `torch` feature (rpath to libtorch, libtorch_cuda kept linked): see `mtseg-torch-link`.

fn main() {
    mtseg_torch_link::emit_if_torch_feature();
}
