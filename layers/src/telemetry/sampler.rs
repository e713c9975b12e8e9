//! The sampler from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

use opentelemetry_sdk::trace::Sampler;

use super::TelemetryError;

/// Parses `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1.0).
pub(crate) fn parse_sampler(
    name: Option<&str>,
    arg: Option<&str>,
) -> Result<Sampler, TelemetryError> {
    let ratio = || -> Result<f64, TelemetryError> {
        match arg {
            None => Ok(1.0),
            Some(arg) => match arg.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(TelemetryError::InvalidEnv {
                    var: "OTEL_TRACES_SAMPLER_ARG",
                    value: arg.to_owned(),
                    expected: "a ratio from 0 to 1",
                }),
            },
        }
    };
    Ok(match name.map(str::trim) {
        None | Some("parentbased_always_on") => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()?),
        Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Some("parentbased_traceidratio") => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        Some(other) => {
            return Err(TelemetryError::InvalidEnv {
                var: "OTEL_TRACES_SAMPLER",
                value: other.to_owned(),
                expected: "always_on, always_off, traceidratio, parentbased_always_on, \
                           parentbased_always_off or parentbased_traceidratio",
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_parse_from_the_standard_names() {
        assert!(matches!(
            parse_sampler(None, None).unwrap(),
            Sampler::ParentBased(_)
        ));
        assert!(matches!(
            parse_sampler(Some("always_off"), None).unwrap(),
            Sampler::AlwaysOff
        ));
        assert!(matches!(
            parse_sampler(Some("traceidratio"), Some("0.25")).unwrap(),
            Sampler::TraceIdRatioBased(r) if r == 0.25
        ));
        let err = parse_sampler(Some("sometimes"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_TRACES_SAMPLER"), "{err}");
        let err = parse_sampler(Some("traceidratio"), Some("2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    }
}
