fn main() {
    let src = std::fs::read_to_string(std::env::args().nth(1).unwrap()).unwrap();
    for ev in saphyr_parser::Parser::new_from_str(&src) {
        match ev {
            Ok((e, span)) => println!("{:?} @ {}:{} idx {} .. {}:{}", e, span.start.line(), span.start.col(), span.start.index(), span.end.line(), span.end.col()),
            Err(e) => { println!("ERR {} at {}:{}", e, e.marker().line(), e.marker().col()); break; }
        }
    }
}
