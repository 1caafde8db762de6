//! The guest side of wasmraid's layout contract (`wit/layout.wit`).
//!
//! A layout is a type implementing [`Layout`]; `export_layout!(MyLayout)` in a
//! `cdylib` crate turns it into a component. The trait and the writer are
//! plain Rust, so a layout is unit-tested natively with [`map_stripes`].

pub mod args;
pub mod gf;
mod writer;

pub use writer::{ROLE_DATA, ROLE_PARITY, ROLE_REPLICA, ROLE_SPARE, StripeWriter};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "layout",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasmraid_guest::bindings",
    });
}

/// What the array looks like (mirror of the WIT `geometry` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Number of legs.
    pub legs: u32,
    /// Chunk size in 512-byte sectors.
    pub chunk_sectors: u32,
    /// Each leg's usable size in chunks.
    pub leg_chunks: Vec<u64>,
    /// The algorithm's arguments as written by the operator.
    pub args: String,
}

impl Geometry {
    /// A geometry of `legs` equal legs, handy in tests.
    pub fn uniform(legs: u32, leg_chunks: u64, args: &str) -> Self {
        Geometry { legs, chunk_sectors: 128, leg_chunks: vec![leg_chunks; legs as usize], args: args.into() }
    }

    /// The smallest leg, in chunks (0 when there are no legs).
    pub fn min_leg_chunks(&self) -> u64 {
        self.leg_chunks.iter().copied().min().unwrap_or(0)
    }
}

/// What a configured layout promises (mirror of the WIT `descriptor`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub data_chunks: u32,
    pub replica_chunks: u32,
    pub parity_chunks: u32,
    pub spare_chunks: u32,
    pub stripes: u64,
    /// Stripes per period, 0 when aperiodic.
    pub period: u64,
    /// Chunks every slot advances per period.
    pub period_advance: u64,
    pub fault_tolerance: u32,
}

impl Descriptor {
    /// Slots per stripe.
    pub fn slots(&self) -> u32 {
        self.data_chunks + self.replica_chunks + self.parity_chunks + self.spare_chunks
    }
}

/// A placement algorithm.
pub trait Layout: Sized {
    /// The name the host shows and a table refers to.
    const NAME: &'static str;

    /// Check the geometry and arguments; build the configured layout.
    fn configure(geometry: &Geometry) -> Result<(Self, Descriptor), String>;

    /// Write the slots of one stripe, in a fixed order.
    fn stripe(&self, stripe: u64, out: &mut StripeWriter<'_>);
}

/// Map `count` stripes from `first` into the contract's flat encoding.
pub fn map_stripes<L: Layout>(layout: &L, descriptor: &Descriptor, first: u64, count: u32) -> Vec<u64> {
    let mut out = Vec::with_capacity(count as usize * writer::words_per_stripe(descriptor));
    let mut w = StripeWriter::new(&mut out, descriptor.data_chunks);
    for s in first..first.saturating_add(u64::from(count)).min(descriptor.stripes) {
        layout.stripe(s, &mut w);
    }
    out
}

#[doc(hidden)]
pub mod glue {
    //! What `export_layout!` expands to, kept out of the macro so it is
    //! ordinary, type-checked code.
    use super::*;
    use crate::bindings::exports::wasmraid::layout::algorithm as wit;

    pub fn configure<L: Layout>(g: wit::Geometry) -> Result<(L, Descriptor, wit::Descriptor), String> {
        let geometry = Geometry { legs: g.legs, chunk_sectors: g.chunk_sectors, leg_chunks: g.leg_chunks, args: g.args };
        if geometry.leg_chunks.len() != geometry.legs as usize {
            return Err(format!("{} leg sizes given for {} legs", geometry.leg_chunks.len(), geometry.legs));
        }
        let (layout, d) = L::configure(&geometry)?;
        let w = wit::Descriptor {
            data_chunks: d.data_chunks,
            replica_chunks: d.replica_chunks,
            parity_chunks: d.parity_chunks,
            spare_chunks: d.spare_chunks,
            stripes: d.stripes,
            period: d.period,
            period_advance: d.period_advance,
            fault_tolerance: d.fault_tolerance,
        };
        Ok((layout, d, w))
    }
}

/// Export a [`Layout`] as the component's `algorithm` interface.
#[macro_export]
macro_rules! export_layout {
    ($layout:ty) => {
        struct WasmraidComponent;

        ::std::thread_local! {
            static CONFIGURED: ::std::cell::RefCell<Option<($layout, $crate::Descriptor)>> =
                const { ::std::cell::RefCell::new(None) };
        }

        impl $crate::bindings::exports::wasmraid::layout::algorithm::Guest for WasmraidComponent {
            fn name() -> ::std::string::String {
                <$layout as $crate::Layout>::NAME.into()
            }

            fn configure(
                geometry: $crate::bindings::exports::wasmraid::layout::algorithm::Geometry,
            ) -> ::std::result::Result<
                $crate::bindings::exports::wasmraid::layout::algorithm::Descriptor,
                ::std::string::String,
            > {
                let (layout, descriptor, wit) = $crate::glue::configure::<$layout>(geometry)?;
                CONFIGURED.with(|c| *c.borrow_mut() = Some((layout, descriptor)));
                Ok(wit)
            }

            fn map_stripes(first: u64, count: u32) -> ::std::vec::Vec<u64> {
                CONFIGURED.with(|c| match &*c.borrow() {
                    Some((layout, descriptor)) => $crate::map_stripes(layout, descriptor, first, count),
                    None => ::std::vec::Vec::new(),
                })
            }
        }

        $crate::bindings::export!(WasmraidComponent with_types_in $crate::bindings);
    };
}
