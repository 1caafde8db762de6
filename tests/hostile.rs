//! Hostile components: each is refused with a clear error, and the host
//! stays alive and serves the next request.

use std::sync::Arc;
use std::time::Instant;
use wasmraid::layout::proven::{LayoutError, ProvenLayout};
use wasmraid::layout::verify::Rule;
use wasmraid::sandbox::{GuestInstance, Sandbox, SandboxError, TrapKind};
use wasmraid_tests::{builtin, geometry, hostile, sandbox};

/// Prove hostile `name` on 4 legs of 4096 chunks; the error it gives.
fn refused(sandbox: &Arc<Sandbox>, name: &str) -> LayoutError {
    let component = match hostile(sandbox, name) {
        Ok(c) => c,
        Err(e) => return LayoutError::Sandbox(e),
    };
    match ProvenLayout::prove(component, geometry(4, 4096, "")) {
        Ok(_) => panic!("hostile component {name} was accepted"),
        Err(e) => e,
    }
}

/// After any refusal, the same sandbox still proves a real layout.
fn still_serves(sandbox: &Arc<Sandbox>) {
    let layout = ProvenLayout::prove(builtin(sandbox, "raid5"), geometry(4, 4096, "")).expect("raid5 after a hostile guest");
    assert_eq!(layout.locate(5).unwrap().leg, 1, "raid5 left-symmetric puts D5 on leg 1");
}

fn proof_rule(e: &LayoutError) -> Rule {
    match e {
        LayoutError::Proof(p) => p.rule,
        other => panic!("expected a proof refusal, got: {other}"),
    }
}

fn trap_kind(e: &LayoutError) -> TrapKind {
    match e {
        LayoutError::Sandbox(SandboxError::Trap { kind, .. }) => *kind,
        LayoutError::Proof(p) if p.rule == Rule::Guest => panic!("trap expected as sandbox error, got proof: {p}"),
        other => panic!("expected a trap, got: {other}"),
    }
}

#[test]
fn infinite_loop_is_interrupted() {
    let sb = sandbox();
    let started = Instant::now();
    let e = refused(&sb, "infinite_loop");
    assert!(e.to_string().contains("ran past its deadline"), "{e}");
    assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    still_serves(&sb);
}

#[test]
fn memory_bomb_hits_the_cap() {
    // Growing to the cap takes a while on a loaded machine: a generous
    // deadline so that the cap, not the clock, is what stops the guest.
    let sb = wasmraid_tests::sandbox_with_timeout(std::time::Duration::from_secs(10));
    let e = refused(&sb, "memory_bomb");
    assert_eq!(trap_kind(&e), TrapKind::OutOfMemory, "{e}");
    assert!(e.to_string().contains("memory limit"), "{e}");
    still_serves(&sb);
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let sb = sandbox();
    let e = refused(&sb, "deep_recursion");
    assert_eq!(trap_kind(&e), TrapKind::StackOverflow, "{e}");
    still_serves(&sb);
}

#[test]
fn trap_poisons_only_that_instance() {
    let sb = sandbox();
    let e = refused(&sb, "trap");
    assert!(e.to_string().contains("unreachable"), "{e}");
    // The same instance object recovers: the next call re-instantiates.
    let mut instance = GuestInstance::new(hostile(&sb, "trap").unwrap());
    instance.configure(&geometry(4, 4096, "")).unwrap();
    assert!(instance.map_stripes(0, 8).is_err());
    assert_eq!(instance.map_stripes(0, 3).unwrap().len(), 3 * 4 * 3);
    assert_eq!(instance.instantiations, 2);
    still_serves(&sb);
}

#[test]
fn leg_out_of_range_is_named() {
    let sb = sandbox();
    let e = refused(&sb, "leg_out_of_range");
    let LayoutError::Proof(p) = &e else { panic!("{e}") };
    assert_eq!((p.rule, p.stripe, p.slot), (Rule::Bounds, Some(5), Some(1)), "{e}");
    assert!(e.to_string().contains("leg 4 does not exist"), "{e}");
    still_serves(&sb);
}

#[test]
fn chunk_out_of_range_is_named() {
    let sb = sandbox();
    let e = refused(&sb, "chunk_out_of_range");
    // Equal legs: one stripe more than they hold is a count no layout can
    // place, refused before a single stripe is asked for (the bounds rule
    // that names the stripe is tested with unequal legs in verify/tests.rs).
    assert_eq!(proof_rule(&e), Rule::Descriptor, "{e}");
    assert!(e.to_string().contains("declares 4097 stripes"), "{e}");
    still_serves(&sb);
}

#[test]
fn two_slots_on_one_chunk() {
    let sb = sandbox();
    let e = refused(&sb, "double_chunk");
    assert_eq!(proof_rule(&e), Rule::Overlap, "{e}");
    still_serves(&sb);
}

#[test]
fn missing_data_index() {
    let sb = sandbox();
    let e = refused(&sb, "missing_data");
    assert_eq!(proof_rule(&e), Rule::DataIndex, "{e}");
    assert!(e.to_string().contains("stripe 0, slot 1"), "{e}");
    still_serves(&sb);
}

#[test]
fn lying_period() {
    let sb = sandbox();
    let e = refused(&sb, "lying_period");
    assert_eq!(proof_rule(&e), Rule::Period, "{e}");
    still_serves(&sb);
}

#[test]
fn lying_fault_tolerance() {
    let sb = sandbox();
    let e = refused(&sb, "lying_fault_tolerance");
    assert_eq!(proof_rule(&e), Rule::FaultTolerance, "{e}");
    assert!(e.to_string().contains("losing legs 0"), "{e}");
    still_serves(&sb);
}

#[test]
fn enormous_result() {
    // A generous deadline: building 128 MiB must not be mistaken for a
    // hang on a loaded machine; the answer's size is what is refused.
    let sb = wasmraid_tests::sandbox_with_timeout(std::time::Duration::from_secs(10));
    let e = refused(&sb, "enormous_result");
    assert_eq!(proof_rule(&e), Rule::Encoding, "{e}");
    assert!(e.to_string().contains("16777216 words"), "{e}");
    still_serves(&sb);
}

#[test]
fn wasi_import_is_refused_by_name() {
    let sb = sandbox();
    let e = refused(&sb, "imports_wasi");
    assert!(matches!(e, LayoutError::Sandbox(SandboxError::Imports { .. })), "{e}");
    assert!(e.to_string().contains("wasi:random/random@0.2.0"), "{e}");
    still_serves(&sb);
}

#[test]
fn garbage_bytes_and_core_modules_are_refused() {
    let sb = sandbox();
    let e = wasmraid::sandbox::component::load(&sb, b"definitely not wasm").err().unwrap();
    assert!(e.to_string().contains("component header"), "{e}");
    let core = b"\0asm\x01\0\0\0";
    let e = wasmraid::sandbox::component::load(&sb, core).err().unwrap();
    assert!(e.to_string().contains("core module"), "{e}");
    let mut truncated = wasmraid::builtins::find("raid5").unwrap().to_vec();
    truncated.truncate(truncated.len() / 2);
    assert!(wasmraid::sandbox::component::load(&sb, &truncated).is_err());
    still_serves(&sb);
}

#[test]
fn a_declared_stripe_count_beyond_the_legs_is_refused_before_any_allocation() {
    let sb = sandbox();
    let started = Instant::now();
    let e = refused(&sb, "huge_stripes");
    assert_eq!(proof_rule(&e), Rule::Descriptor, "{e}");
    assert!(e.to_string().contains("18446744073709551615 stripes"), "{e}");
    assert!(started.elapsed().as_secs() < 5, "took {:?}", started.elapsed());
    still_serves(&sb);
}

#[test]
fn guest_text_is_cut_and_escaped() {
    let sb = wasmraid_tests::sandbox_with_timeout(std::time::Duration::from_secs(10));
    let component = hostile(&sb, "hostile_text").expect("loads");
    let mut instance = GuestInstance::new(component.clone());
    let (name, configure) = (instance.name().unwrap_err().to_string(), instance.configure(&geometry(4, 4096, "")).unwrap_err().to_string());
    for text in [&name, &configure] {
        assert!(text.len() < 1000, "{} bytes: {}", text.len(), &text[..200.min(text.len())]);
        assert!(!text.chars().any(|c| c.is_control()), "control characters reach the operator: {text:?}");
        assert!(text.contains("more characters cut"), "{text}");
    }
    assert!(configure.contains("\\u{a}\\u{1b}[32mproof      PASSED"), "the forged line is shown, inert: {configure}");
    let e = ProvenLayout::prove(component, geometry(4, 4096, "")).map(|_| ()).unwrap_err().to_string();
    assert!(e.len() < 1000 && !e.chars().any(|c| c.is_control()), "{e:?}");
    still_serves(&sb);
}

#[test]
fn a_slow_guest_runs_out_of_proof_time() {
    let sb = Sandbox::new(wasmraid::sandbox::SandboxConfig {
        call_timeout: std::time::Duration::from_secs(5),
        proof_timeout: std::time::Duration::from_secs(2),
        cache_dir: None,
        ..Default::default()
    })
    .expect("sandbox");
    let started = Instant::now();
    let e = refused(&sb, "slow_calls");
    assert_eq!(proof_rule(&e), Rule::Guest, "{e}");
    assert!(e.to_string().contains("--proof-timeout"), "{e}");
    assert!(started.elapsed().as_secs() < 8, "took {:?}", started.elapsed());
    still_serves(&sb);
}

#[test]
fn a_guest_that_changes_its_answer_is_never_used_once_it_does() {
    let sb = sandbox();
    let layout = ProvenLayout::prove(hostile(&sb, "nondeterministic").expect("loads"), geometry(4, 4096, "")).expect("its first answers are a valid layout");
    // A pooled instance asked again answers differently for odd blocks.
    let e = layout.stripe(256).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("differs from what was proven"), "{e}");
    still_serves(&sb);
}

#[test]
fn many_threads_refilling_an_aperiodic_map_share_two_instances() {
    // fat_instances: 240 MiB per instance, a few milliseconds per refill.
    let sb = wasmraid_tests::sandbox_with_timeout(std::time::Duration::from_secs(10));
    let layout = ProvenLayout::prove(hostile(&sb, "fat_instances").expect("loads"), geometry(4, 1 << 16, "")).expect("an honest layout");
    let wasmraid::layout::proven::LayoutMap::Aperiodic(map) = &layout.map else { panic!("aperiodic") };
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let layout = &layout;
            scope.spawn(move || {
                for b in 0..16u64 {
                    layout.stripe((t * 16 + b) * 256).expect("refill");
                }
            });
        }
    });
    assert!(map.instances() <= 2, "{} instances of 240 MiB for 8 threads", map.instances());
    assert!(map.instances() >= 1);
}
