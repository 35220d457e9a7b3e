fn main() {
    let mut stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut io = meshplan::Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
        today: meshplan::today_from_env(),
    };
    std::process::exit(meshplan::run(std::env::args_os(), &mut io));
}
