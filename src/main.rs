fn main() {
    print!("{}", redrive_operator::crd::crd_yaml());
}
