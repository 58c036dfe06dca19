//! The wit-bindgen output for `leadtime:agent-runtime`. Generated in exactly one place; plugin
//! code uses the SDK's re-exports instead.

wit_bindgen::generate!({
    path: "../wit",
    world: "connection-plugin",
    pub_export_macro: true,
    export_macro_name: "export",
    default_bindings_module: "leadtime_plugin_sdk::__private::bindings",
    additional_derives: [PartialEq, Clone],
});
