wasmraid_guest::export_layout!(wasmraid_layouts::pyramid::Pyramid);
