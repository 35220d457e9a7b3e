//! The release catalog loader, shape and meaning, on any text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let src = meshplan::source::Source::new("catalog.yaml", text);
        let _ = meshplan::catalog::Catalog::from_source(&src);
    }
});
