//! `yunmo-testkit services [--postgres] [--s3] [--redis]`: starts the named real servers for tests written in
//! other languages (the Python client tests), prints one JSON line with their addresses once all are up, then
//! reads commands from stdin until it closes, and stops them and removes their data.
//!
//! Commands, one per line, each answered by a line `ok` (or `error: ...`): `pause NAME` and `resume NAME`,
//! NAME being `postgres`, `s3` or `redis` (to test what a cluster does while one is down).

use std::io::{BufRead, Write};

use yunmo_testkit::{Postgres, Redis, S3, S3_ACCESS_KEY, S3_SECRET_KEY};

const USAGE: &str = "usage: yunmo-testkit services [--postgres] [--s3] [--redis]";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("services") || args.len() < 2 {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    }
    let mut wanted = [false; 3];
    for arg in &args[1..] {
        match arg.as_str() {
            "--postgres" => wanted[0] = true,
            "--s3" => wanted[1] = true,
            "--redis" => wanted[2] = true,
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let mut postgres = wanted[0].then(Postgres::start);
    let mut s3 = wanted[1].then(|| S3::start("yunmo"));
    let mut redis = wanted[2].then(Redis::start);
    let mut fields = Vec::new();
    if let Some(postgres) = &postgres {
        fields.push(format!("\"postgres_url\": \"{}\"", postgres.create_database("yunmo")));
    }
    if let Some(s3) = &s3 {
        fields.push(format!(
            "\"s3\": {{\"endpoint\": \"{}\", \"bucket\": \"{}\", \"region\": \"us-east-1\", \"access_key_id\": \"{S3_ACCESS_KEY}\", \"secret_access_key\": \"{S3_SECRET_KEY}\"}}",
            s3.endpoint(),
            s3.bucket()
        ));
    }
    if let Some(redis) = &redis {
        fields.push(format!("\"redis_url\": \"{}\"", redis.url()));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{{{}}}", fields.join(", "));
    let _ = stdout.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["pause", "postgres"] => postgres.as_mut().map(Postgres::pause),
            ["resume", "postgres"] => postgres.as_mut().map(Postgres::resume),
            ["pause", "s3"] => s3.as_mut().map(S3::pause),
            ["resume", "s3"] => s3.as_mut().map(S3::resume),
            ["pause", "redis"] => redis.as_mut().map(Redis::pause),
            ["resume", "redis"] => redis.as_mut().map(Redis::resume),
            _ => None,
        };
        let _ = writeln!(
            stdout,
            "{}",
            if answer.is_some() { "ok".to_string() } else { format!("error: not a command for a started server: {line}") }
        );
        let _ = stdout.flush();
    }
    std::process::ExitCode::SUCCESS
}
