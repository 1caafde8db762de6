wasmraid_guest::export_layout!(wasmraid_layouts::raid4::Raid4);
