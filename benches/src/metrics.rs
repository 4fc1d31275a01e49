//! Reads a `fjord serve` node's Prometheus page (`GET /metrics`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The `/metrics` page of the node whose HTTP listener is `http`
/// (`host:port`), or `None` when it cannot be read.
pub fn scrape(http: &str) -> Option<String> {
    let addr = http.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The value of the sample named exactly `name` (labels included, e.g.
/// `fjord_x{reason="y"}`) on a scraped page.
pub fn value(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let (sample, value) = line.rsplit_once(' ')?;
        (sample == name).then(|| value.trim().parse().ok())?
    })
}

/// Every sample of `name` that has labels, as (the labels' text, value):
/// `fjord_x{reason="y"} 3` gives `("reason=\"y\"", 3.0)`.
pub fn labelled(page: &str, name: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}{{");
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (labels, value) = rest.split_once("} ")?;
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_whole_name() {
        let page = "# HELP fjord_a_total 1 when x\nfjord_a_total 7\nfjord_ab_total 9\n\
                    fjord_d_total{reason=\"slow\"} 2\nfjord_d_total{reason=\"full\"} 5\n";
        assert_eq!(value(page, "fjord_a_total"), Some(7.0));
        assert_eq!(value(page, "fjord_b_total"), None);
        assert_eq!(
            labelled(page, "fjord_d_total"),
            vec![
                ("reason=\"slow\"".to_string(), 2.0),
                ("reason=\"full\"".to_string(), 5.0)
            ]
        );
    }
}
