fn main() -> std::process::ExitCode {
    redrive_operator::cli::main()
}
