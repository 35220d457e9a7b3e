//! The whole `check` pipeline (read, load, validate, upgrade paths, diagnostics) on any bytes
//! given as standard input, as `meshplan check - --to 1.22.8` sees them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut stdin = data;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut io = meshplan::Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
        today: meshplan::catalog::Date::parse("2026-11-24"),
        stderr_is_terminal: false,
        no_color: true,
        color: false,
    };
    let args = ["meshplan", "check", "-", "--to", "1.22.8"];
    let code = meshplan::run(args.iter().map(std::ffi::OsString::from), &mut io);
    assert!(matches!(code, 0 | 1 | 4), "exit {code}");
});
