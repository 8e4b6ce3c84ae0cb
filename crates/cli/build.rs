//! Link settings of the `mtseg-pipeline` binary (rpath to libtorch, libtorch_cuda kept linked): see `mtseg-torch-link`.

fn main() {
    mtseg_torch_link::emit();
}
