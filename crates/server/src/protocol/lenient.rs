//! Integer fields that also accept integral numbers written as floats (`"max_tokens": 5.0`),
//! as vLLM and SGLang do (pydantic's lax mode): some clients serialise every number as a
//! float. A fractional value (`5.5`) or a non-number stays an error naming the field.

use serde::de::{Error, Unexpected};
use serde::{Deserialize, Deserializer};
use serde_json::{Number, Value};

/// `Option<T>` from a JSON integer, an integral float, or null/absent.
pub fn opt_int<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => int(&value).map(Some),
    }
}

/// A list of integers, each an integer or an integral float.
pub fn int_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    Vec::<Value>::deserialize(deserializer)?
        .iter()
        .map(int)
        .collect()
}

/// A list of [`int_vec`] lists.
pub fn int_vecs<'de, D, T>(deserializer: D) -> Result<Vec<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    Vec::<Vec<Value>>::deserialize(deserializer)?
        .iter()
        .map(|values| values.iter().map(int).collect())
        .collect()
}

/// `Option<Vec<T>>` of [`int_vec`], or null/absent.
pub fn opt_int_vec<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    match Option::<Vec<Value>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(values) => values.iter().map(int).collect::<Result<_, _>>().map(Some),
    }
}

fn int<E: Error, T: TryFrom<i64>>(value: &Value) -> Result<T, E> {
    let Value::Number(number) = value else {
        return Err(E::invalid_type(unexpected(value), &"an integer"));
    };
    let i = integral(number).ok_or_else(|| {
        let f = number.as_f64().unwrap_or(f64::NAN);
        E::invalid_value(Unexpected::Float(f), &"an integer")
    })?;
    T::try_from(i).map_err(|_| E::invalid_value(Unexpected::Signed(i), &"an integer in range"))
}

fn integral(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // 2^63 as f64: every integral float strictly inside (-2^63, 2^63) converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && f > -LIMIT && f < LIMIT).then_some(f as i64)
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Null => Unexpected::Unit,
        _ => Unexpected::Map,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "super::opt_int")]
        n: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Lists {
        #[serde(deserialize_with = "super::int_vec")]
        ids: Vec<u32>,
        #[serde(default, deserialize_with = "super::int_vecs")]
        batches: Vec<Vec<u32>>,
        #[serde(default, deserialize_with = "super::opt_int_vec")]
        stops: Option<Vec<u32>>,
    }

    #[test]
    fn lists_take_integral_floats_and_refuse_the_rest() {
        let ok: Lists = serde_json::from_str(
            r#"{"ids": [1, 2.0, 3e0], "stops": [4.0], "batches": [[5.0, 6], []]}"#,
        )
        .expect("integral floats");
        assert_eq!((ok.ids, ok.stops), (vec![1, 2, 3], Some(vec![4])));
        assert_eq!(ok.batches, vec![vec![5, 6], vec![]]);
        let none: Lists = serde_json::from_str(r#"{"ids": [], "stops": null}"#).expect("null");
        assert_eq!(none.stops, None);
        for body in [
            r#"{"ids": [1.5]}"#,
            r#"{"ids": ["1"]}"#,
            r#"{"ids": [null]}"#,
            r#"{"ids": 1}"#,
            r#"{"ids": [], "stops": [-1]}"#,
            r#"{"ids": [], "batches": [[1.5]]}"#,
            r#"{"ids": [], "batches": [1]}"#,
        ] {
            assert!(serde_json::from_str::<Lists>(body).is_err(), "{body}");
        }
    }

    fn parse(body: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<Probe>(body)
            .map(|p| p.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_and_integral_floats_are_accepted() {
        assert_eq!(parse(r#"{"n": 5}"#), Ok(Some(5)));
        assert_eq!(parse(r#"{"n": 5.0}"#), Ok(Some(5)));
        assert_eq!(parse(r#"{"n": 1e1}"#), Ok(Some(10)));
        assert_eq!(parse(r#"{"n": null}"#), Ok(None));
        assert_eq!(parse("{}"), Ok(None));
    }

    #[test]
    fn fractions_wrong_types_and_out_of_range_are_errors() {
        for body in [
            r#"{"n": 5.5}"#,
            r#"{"n": "5"}"#,
            r#"{"n": true}"#,
            r#"{"n": [1]}"#,
        ] {
            let e = parse(body).expect_err(body);
            assert!(e.contains("an integer"), "{body}: {e}");
        }
        let e = parse(r#"{"n": -1}"#).expect_err("negative into u32");
        assert!(e.contains("in range"), "{e}");
        assert!(parse(r#"{"n": 1e300}"#).is_err());
    }
}
