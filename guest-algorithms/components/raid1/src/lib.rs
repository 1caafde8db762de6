wasmraid_guest::export_layout!(wasmraid_layouts::raid1::Raid1);
