wasmraid_guest::export_layout!(wasmraid_layouts::raid0::Raid0);
