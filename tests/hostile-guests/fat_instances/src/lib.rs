//! An honest aperiodic striping whose every instance holds 240 MiB: one
//! instance per serving thread took a daemon with four NBD clients to 4 GB.
//! A refill of one cache block (256 stripes, not the proof's batches)
//! takes a few milliseconds, so that many serving threads refill at once.
use std::cell::RefCell;
use wasmraid_guest::bindings::exports::wasmraid::layout::algorithm as wit;
use wasmraid_guest::{Descriptor, Geometry, Layout, StripeWriter};

struct Fat {
    legs: u32,
    ballast: Vec<u8>,
}

impl Layout for Fat {
    const NAME: &'static str = "fat-instances";
    fn configure(g: &Geometry) -> Result<(Self, Descriptor), String> {
        // Touched, so the pages are really there.
        let ballast = vec![1u8; 240 << 20];
        Ok((Fat { legs: g.legs, ballast }, Descriptor { data_chunks: g.legs, stripes: g.min_leg_chunks(), period: 0, period_advance: 0, ..Default::default() }))
    }
    fn stripe(&self, s: u64, out: &mut StripeWriter<'_>) {
        std::hint::black_box(self.ballast[(s as usize * 4096) % self.ballast.len()]);
        let turn = (s % u64::from(self.legs)) as u32;
        for k in 0..self.legs {
            out.data((k + turn) % self.legs, s, k);
        }
    }
}

thread_local! {
    static CONFIGURED: RefCell<Option<(Fat, Descriptor)>> = const { RefCell::new(None) };
}

struct Component;

impl wit::Guest for Component {
    fn name() -> String {
        Fat::NAME.into()
    }
    fn configure(geometry: wit::Geometry) -> Result<wit::Descriptor, String> {
        let (layout, descriptor, w) = wasmraid_guest::glue::configure::<Fat>(geometry)?;
        CONFIGURED.with(|c| *c.borrow_mut() = Some((layout, descriptor)));
        Ok(w)
    }
    fn map_stripes(first: u64, count: u32) -> Vec<u64> {
        if count <= 256 {
            let mut x = first;
            for i in 0..5_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
            }
            std::hint::black_box(x);
        }
        CONFIGURED.with(|c| match &*c.borrow() {
            Some((layout, d)) => wasmraid_guest::map_stripes(layout, d, first, count),
            None => Vec::new(),
        })
    }
}

wasmraid_guest::bindings::export!(Component with_types_in wasmraid_guest::bindings);
