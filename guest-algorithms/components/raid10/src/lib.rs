wasmraid_guest::export_layout!(wasmraid_layouts::raid10::Raid10);
