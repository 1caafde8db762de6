//! Parity encode: wasmraid's AVX2 GF(2^8) encoder against ISA-L's
//! `ec_encode_data` on the same buffers, with memory bandwidth (memcpy)
//! measured in the same run. Bar: at least 0.8x ISA-L.

mod harness;

use harness::{row, seconds};
use std::hint::black_box;
use wasmraid::layout::gf256;
use wasmraid::parity::{EncodeMatrix, encode};

#[link(name = "isal")]
unsafe extern "C" {
    fn ec_init_tables(k: i32, rows: i32, a: *const u8, gftbls: *mut u8);
    fn ec_encode_data(len: i32, k: i32, rows: i32, gftbls: *const u8, data: *const *const u8, coding: *const *mut u8);
}

fn main() {
    println!("== parity encode, data bytes per second (median of 15)");
    for (k, p, len) in [(8usize, 2usize, 64usize << 10), (10, 4, 64 << 10), (4, 1, 256 << 10), (12, 3, 16 << 10)] {
        // md's P and Q for p <= 2, a Vandermonde extension beyond.
        let rows: Vec<Vec<u8>> = (0..p).map(|m| (0..k).map(|j| gf256::exp2((m * j) as u32)).collect()).collect();
        let data: Vec<Vec<u8>> = (0..k).map(|j| (0..len).map(|i| (i * 31 + j * 7 + (i >> 9)) as u8).collect()).collect();
        let srcs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let matrix = EncodeMatrix::new(&rows);
        let mut ours: Vec<Vec<u8>> = vec![vec![0u8; len]; p];
        let mut theirs: Vec<Vec<u8>> = vec![vec![0u8; len]; p];

        let flat: Vec<u8> = rows.iter().flatten().copied().collect();
        let mut tables = vec![0u8; 32 * k * p];
        // SAFETY: `flat` holds p x k coefficients and `tables` 32 x k x p
        // bytes, as ec_init_tables requires.
        unsafe { ec_init_tables(k as i32, p as i32, flat.as_ptr(), tables.as_mut_ptr()) };
        let data_ptrs: Vec<*const u8> = data.iter().map(|d| d.as_ptr()).collect();
        let isal = |out: &mut Vec<Vec<u8>>| {
            let coding: Vec<*mut u8> = out.iter_mut().map(|c| c.as_mut_ptr()).collect();
            // SAFETY: k data buffers and p coding buffers of `len` bytes
            // each, and tables from ec_init_tables for this k and p.
            unsafe { ec_encode_data(len as i32, k as i32, p as i32, tables.as_ptr(), data_ptrs.as_ptr(), coding.as_ptr()) };
        };
        {
            let mut outs: Vec<&mut [u8]> = ours.iter_mut().map(Vec::as_mut_slice).collect();
            encode(&matrix, &srcs, &mut outs);
        }
        isal(&mut theirs);
        assert!(ours == theirs, "wasmraid and ISA-L disagree for k={k} p={p}");

        let bytes = (k * len) as f64;
        let rounds = (256 << 20) / (k * len);
        let t_ours = seconds(15, || {
            for _ in 0..rounds {
                let mut outs: Vec<&mut [u8]> = ours.iter_mut().map(Vec::as_mut_slice).collect();
                encode(&matrix, black_box(&srcs), &mut outs);
            }
        }) / rounds as f64;
        let t_isal = seconds(15, || {
            for _ in 0..rounds {
                isal(black_box(&mut theirs));
            }
        }) / rounds as f64;
        let mut copy = vec![0u8; k * len];
        let joined: Vec<u8> = data.concat();
        let t_copy = seconds(15, || {
            for _ in 0..rounds {
                copy.copy_from_slice(black_box(&joined));
            }
        }) / rounds as f64;
        let gbs = |t: f64| bytes / t / 1e9;
        println!("k={k} data + p={p} parity, {} KiB chunks", len >> 10);
        row("  memcpy of the data (memory bandwidth)", gbs(t_copy), "GB/s", None);
        row("  ISA-L ec_encode_data", gbs(t_isal), "GB/s", Some((t_copy / t_isal, "of memcpy")));
        row("  wasmraid parity::encode", gbs(t_ours), "GB/s", Some((t_isal / t_ours, "of ISA-L (bar >= 0.80)")));
    }
}
