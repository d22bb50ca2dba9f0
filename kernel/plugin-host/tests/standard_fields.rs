//! The SDK's list of standard objects and fields (what plugins know
//! without asking the host) is the kernel's standard metadata.

use crm_core::Metadata;
use crm_plugin_sdk::standard;

#[test]
fn the_sdk_lists_the_kernels_standard_objects_and_fields() {
    let metadata = Metadata::standard();
    let objects: Vec<&str> = metadata.objects.iter().map(|object| object.name.as_str()).collect();
    assert_eq!(objects, standard::OBJECTS);
    for object in &metadata.objects {
        let fields: Vec<&str> = object.fields.iter().map(|field| field.name.as_str()).collect();
        assert_eq!(fields, standard::fields(&object.name), "fields of {}", object.name);
    }
    assert!(standard::fields("follow_up_rule").is_empty());
}

#[test]
fn the_sdk_lists_the_kernels_system_fields() {
    for name in crm_core::metadata::SYSTEM_FIELDS {
        assert!(standard::SYSTEM_FIELDS.contains(&name), "{name}");
    }
}
