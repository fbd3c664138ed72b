//! Calibration files: sample inputs for static quantisation, uploaded with purpose `calibration`. A file is
//! one or more KServe V2 inference requests in JSON, as sent to `/v2/models/{name}/infer` (one document,
//! or several one after another: JSON Lines), each input's first dimension counting samples. The upload
//! checks the structure (every request names the same inputs, datatypes and shapes are valid); the job
//! decodes the data and names the request and input of anything wrong in it.

use serde::Deserialize;
use serde::de::IgnoredAny;
use yunmo_types::DataType;

#[derive(Deserialize)]
struct Request {
    inputs: Vec<Input>,
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    outputs: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Input {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[allow(dead_code)]
    data: IgnoredAny,
}

/// The input names (sorted) and the number of samples of a calibration file, or what is wrong with it.
pub fn scan(bytes: &[u8], max_rows: usize) -> Result<(Vec<String>, usize), String> {
    let mut names: Option<Vec<String>> = None;
    let mut rows = 0usize;
    let documents = serde_json::Deserializer::from_slice(bytes).into_iter::<Request>();
    for (index, request) in documents.enumerate() {
        let number = index + 1;
        let request = request.map_err(|error| {
            format!("request {number} is not a V2 inference request in JSON ({{\"inputs\": [{{\"name\", \"shape\", \"datatype\", \"data\"}}]}}): {error}")
        })?;
        if request.inputs.is_empty() {
            return Err(format!("request {number} has no inputs"));
        }
        let mut batch = None;
        for input in &request.inputs {
            if DataType::parse(&input.datatype).is_none() {
                return Err(format!("request {number}, input '{}': unknown datatype '{}'", input.name, input.datatype));
            }
            match input.shape.first() {
                Some(&first) if first >= 1 && input.shape.iter().all(|&dim| dim >= 0) => {
                    if batch.is_some_and(|batch| batch != first) {
                        return Err(format!(
                            "request {number}, input '{}': its first dimension {first} differs from the other inputs'",
                            input.name
                        ));
                    }
                    batch = Some(first);
                }
                _ => {
                    return Err(format!(
                        "request {number}, input '{}': shape {:?} must have a first (sample) dimension of at least 1 and no negative one",
                        input.name, input.shape
                    ));
                }
            }
        }
        let mut these: Vec<String> = request.inputs.iter().map(|input| input.name.clone()).collect();
        these.sort();
        if these.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(format!("request {number} names an input twice"));
        }
        match &names {
            Some(first) if *first != these => {
                return Err(format!(
                    "request {number} has inputs {these:?}, request 1 has {first:?}: every request must send the same inputs"
                ));
            }
            Some(_) => {}
            None => names = Some(these),
        }
        rows = rows.saturating_add(batch.unwrap_or(0) as usize);
        if rows > max_rows {
            return Err(format!("more than {max_rows} samples (jobs.max_rows)"));
        }
    }
    let names = names.ok_or("the file holds no request: send one V2 inference request in JSON, or several as JSON Lines")?;
    Ok((names, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_or_json_lines_are_counted_by_samples() {
        let one = br#"{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}"#;
        assert_eq!(scan(one, 100).unwrap(), (vec!["x".to_string()], 2));
        let lines = b"{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 1], \"datatype\": \"FP32\", \"data\": [1]}]}\n\
                      {\"inputs\": [{\"name\": \"x\", \"shape\": [3, 1], \"datatype\": \"FP32\", \"data\": [1, 2, 3]}]}\n";
        assert_eq!(scan(lines, 100).unwrap().1, 4);
        assert!(scan(lines, 3).unwrap_err().contains("more than 3 samples"));
    }

    #[test]
    fn bad_files_are_refused_with_the_request_named() {
        assert!(scan(b"", 10).unwrap_err().contains("holds no request"));
        assert!(scan(b"a,b\n1,2\n", 10).unwrap_err().starts_with("request 1 is not a V2 inference request"));
        let mixed = br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}
{"inputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]}"#;
        assert!(scan(mixed, 10).unwrap_err().starts_with("request 2 has inputs"));
        let bad_type = br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}]}"#;
        assert_eq!(scan(bad_type, 10).unwrap_err(), "request 1, input 'x': unknown datatype 'FLOAT'");
        let no_batch = br#"{"inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": [1]}]}"#;
        assert!(scan(no_batch, 10).unwrap_err().contains("first (sample) dimension"));
    }
}
