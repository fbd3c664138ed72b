//! A fast path for the commonest large JSON tensor: numbers in (possibly nested) arrays, for the float
//! types. It scans the raw text once and parses each number with `fast-float2` straight into
//! little-endian bytes. Anything it does not expect (a string, `null`, a malformed number, a count that
//! does not match the shape) makes it give up and return `None`, so the general serde path decodes the
//! request and produces the usual error message.

use yunmo_types::DataType;

/// Decodes `text` (a JSON array) of `expected` numbers for a float `datatype`; `None` to fall back.
pub(crate) fn float_array(text: &str, datatype: DataType, expected: usize) -> Option<Vec<u8>> {
    let size = match datatype {
        DataType::Fp32 => 4,
        DataType::Fp64 => 8,
        _ => return None,
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(expected * size);
    let mut index = 0;
    let mut depth = 0usize;
    let mut count = 0usize;
    while index < bytes.len() {
        match bytes[index] {
            b'[' => {
                depth += 1;
                index += 1;
            }
            b']' => {
                depth = depth.checked_sub(1)?;
                index += 1;
            }
            b',' | b' ' | b'\n' | b'\r' | b'\t' => index += 1,
            b'-' | b'0'..=b'9' => {
                if depth == 0 || count == expected {
                    return None;
                }
                let rest = &bytes[index..];
                let end = rest.iter().position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')).unwrap_or(rest.len());
                let token = &rest[..end];
                // JSON numbers only: fast-float2 also accepts "inf", "nan" and a leading '+', which JSON does not.
                if token.first() == Some(&b'+') {
                    return None;
                }
                if size == 4 {
                    let value: f64 = fast_float2::parse(token).ok()?;
                    let narrowed = value as f32;
                    // Past f32's range: the serde path names the element and the bound.
                    if !narrowed.is_finite() {
                        return None;
                    }
                    out.extend_from_slice(&narrowed.to_le_bytes());
                } else {
                    let value: f64 = fast_float2::parse(token).ok()?;
                    out.extend_from_slice(&value.to_le_bytes());
                }
                count += 1;
                index += end;
            }
            _ => return None,
        }
    }
    (depth == 0 && count == expected).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_on_numbers_and_gives_up_on_anything_else() {
        let values = [0.1f64, -2.5e-7, 3.0, 123456.789, -0.0, 1e30];
        let text = serde_json::to_string(&[[values[0], values[1], values[2]], [values[3], values[4], values[5]]]).unwrap();
        let fast = float_array(&text, DataType::Fp32, 6).unwrap();
        let want: Vec<u8> = values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
        assert_eq!(fast, want);
        let fast64 = float_array(&text, DataType::Fp64, 6).unwrap();
        assert_eq!(fast64, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        for bad in ["[1, 1.5e40]", "[1, null]", "[1, \"2\"]", "[1, 2", "[1, 2]]", "[+1, 2]", "[1, 2, 3]", "[1e, 2]", "[[1], {\"a\": 2}]"] {
            assert_eq!(float_array(bad, DataType::Fp32, 2), None, "{bad}");
        }
        assert_eq!(float_array("[1, 2]", DataType::Int32, 2), None, "integers go through serde with range checks");
    }
}
