//! The `tokenspeed-server` binary.

fn main() -> std::process::ExitCode {
    eprintln!("{}", tokenspeed_server::NOT_BUILT_YET);
    std::process::ExitCode::from(2)
}
