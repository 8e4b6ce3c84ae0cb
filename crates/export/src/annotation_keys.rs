//! Deterministic annotation keys: the `.db` `key` column and the GeoJSON feature `id`.
//!
//! TIAToolbox uses `uuid.uuid4()` (random), so two runs give different files. Here the key is a
//! UUID version 5 of `"<stem>/<task name>/<id>"` in the namespace [`KEY_NAMESPACE`], itself
//! `uuid5(NAMESPACE_URL, "urn:mtseg-pipeline:export")`. In Python:
//! `uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:mtseg-pipeline:export"),
//! "CMU-1/nuclei_segmentation/7")`. A rerun writes the same keys; the same nucleus has the same
//! key in the `.db` and the GeoJSON.

use uuid::Uuid;

use crate::export_names::Task;

/// Namespace of the annotation keys: `uuid5(NAMESPACE_URL, "urn:mtseg-pipeline:export")`.
pub const KEY_NAMESPACE: Uuid = uuid::uuid!("f3f8836d-5436-585d-a35f-3853f186223b");

/// The key of record `id` of `task` for the slide with file stem `stem`.
///
/// ```
/// use mtseg_export::{Task, annotation_key};
/// let key = annotation_key("slide", Task::Nuclei, 1);
/// assert_eq!(key.to_string(), "531d0463-9c0a-5b9d-a8d4-883fd998fa6f");
/// ```
#[must_use]
pub fn annotation_key(stem: &str, task: Task, id: u64) -> Uuid {
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("{stem}/{}/{id}", task.name()).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_the_documented_uuid5() {
        assert_eq!(
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:mtseg-pipeline:export"),
            KEY_NAMESPACE
        );
        assert_ne!(
            annotation_key("s", Task::Nuclei, 1),
            annotation_key("s", Task::Layers, 1)
        );
    }
}
