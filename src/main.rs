fn main() {
    std::process::exit(postling::cli::main());
}
