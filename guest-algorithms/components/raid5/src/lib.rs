wasmraid_guest::export_layout!(wasmraid_layouts::raid5::Raid5);
