//! Reads "local-seconds,mg/dL" lines on stdin and prints the summary as JSON: a way to put
//! the metrics beside iglu's by hand.

use std::io::BufRead;

use medmesh_glucose::{Reading, normalize, summarize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut readings = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Some((at, value)) = line.split_once(',') else {
            continue;
        };
        readings.push(Reading {
            at: at.trim().parse()?,
            mg_dl: value.trim().parse()?,
        });
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&summarize(&normalize(readings)))?
    );
    Ok(())
}
