fn main() {
    std::process::exit(orderctl::run(std::env::args_os()));
}
