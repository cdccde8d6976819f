//! Command line parsing.

pub fn main() -> i32 {
    0
}
