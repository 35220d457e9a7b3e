use std::io::Write;

/// Standard output that remembers the first write that failed, so that output lost to a full
/// disk or a closed file is an error (exit 4), never a silent success.
struct Tracked<W: Write> {
    inner: W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        if let Err(e) = &r
            && self.failed.is_none()
        {
            self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        if let Err(e) = &r
            && self.failed.is_none()
        {
            self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
        }
        r
    }
}

fn main() {
    let today = match meshplan::today_from_env() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(meshplan::exit::USAGE);
        }
    };
    let mut stdin = std::io::stdin();
    let mut stdout = Tracked {
        inner: std::io::stdout().lock(),
        failed: None,
    };
    let mut stderr = std::io::stderr();
    let mut io = meshplan::Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
        today,
        stderr_is_terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        color: false,
    };
    let mut code = meshplan::run(std::env::args_os(), &mut io);
    let _ = stdout.flush();
    match stdout.failed {
        // The reader went away (`meshplan ... | head`): what it wanted, it got.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Some(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            code = meshplan::exit::IO;
        }
        None => {}
    }
    std::process::exit(code);
}
