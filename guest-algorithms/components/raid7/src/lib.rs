wasmraid_guest::export_layout!(wasmraid_layouts::raid7::Raid7);
