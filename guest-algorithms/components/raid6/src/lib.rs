wasmraid_guest::export_layout!(wasmraid_layouts::raid6::Raid6);
