//! The inventory loader (YAML events, schema, typed conversion) on any text: it must return
//! diagnostics or an inventory, never panic, hang or grow without bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let src = meshplan::source::Source::new("fuzz.yaml", text);
        let _ = meshplan::load::inventory(&src);
    }
});
