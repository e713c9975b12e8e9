//! The response bodies: Spring Boot Actuator JSON, or draft-inadarei `application/health+json`.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use http::{
    HeaderValue, Response, StatusCode,
    header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE},
};
use http_body_util::Full;
use serde::Serialize;

use crate::{ComponentHealth, HealthReport, Status};

pub(super) const APPLICATION_JSON: &str = "application/json";
pub(super) const HEALTH_JSON: &str = "application/health+json";

pub(super) fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    head: bool,
) -> Response<Full<Bytes>> {
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(if head {
        Full::default()
    } else {
        Full::new(Bytes::from(body))
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_LENGTH, length);
    response
}

// --- Actuator JSON -------------------------------------------------------------------------

#[derive(Serialize)]
struct ActuatorBody<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    components: BTreeMap<&'a str, ActuatorBody<'a>>,
}

impl<'a> ActuatorBody<'a> {
    fn component(component: &'a ComponentHealth, details: bool) -> Self {
        Self {
            status: component.status().as_str(),
            details: (details && !component.details().is_empty()).then(|| component.details()),
            components: BTreeMap::new(),
        }
    }
}

// --- draft-inadarei health+json -------------------------------------------------------------

#[derive(Serialize)]
struct HealthJsonBody<'a> {
    status: &'static str,
    checks: BTreeMap<String, [HealthJsonCheck<'a>; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthJsonCheck<'a> {
    component_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

fn health_json_entry<'a>(
    name: &'a str,
    component: &'a ComponentHealth,
    details: bool,
) -> (String, [HealthJsonCheck<'a>; 1]) {
    let pseudo = component.duration() == Duration::ZERO
        && (name == crate::READINESS_STATE || name == crate::STARTUP_STATE);
    let measured = details && !pseudo;
    let output = (details && !component.status().is_passing())
        .then(|| {
            component.details().get("error").map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .flatten();
    let key = if pseudo {
        format!("{name}:status")
    } else {
        format!("{name}:responseTime")
    };
    let check = HealthJsonCheck {
        component_id: name,
        status: component.status().health_json_status(),
        observed_value: measured.then(|| component.duration().as_secs_f64() * 1_000.0),
        observed_unit: measured.then_some("ms"),
        time: details.then(|| humantime::format_rfc3339_millis(component.checked_at()).to_string()),
        output,
    };
    (key, [check])
}

pub(super) fn render_report(
    report: &HealthReport,
    health_json: bool,
    details: bool,
) -> (StatusCode, Vec<u8>) {
    let body = if health_json {
        let mut status = report.status().health_json_status();
        if status == "pass" && report.components().any(|(_, c)| c.status() != Status::Up) {
            status = "warn";
        }
        serde_json::to_vec(&HealthJsonBody {
            status,
            checks: report
                .components()
                .map(|(name, c)| health_json_entry(name, c, details))
                .collect(),
        })
    } else {
        serde_json::to_vec(&ActuatorBody {
            status: report.status().as_str(),
            details: None,
            components: report
                .components()
                .map(|(name, c)| (name, ActuatorBody::component(c, details)))
                .collect(),
        })
    };
    (report.http_status(), body.unwrap_or_default())
}

pub(super) fn render_component(
    name: &str,
    component: &ComponentHealth,
    health_json: bool,
    details: bool,
) -> (StatusCode, Vec<u8>) {
    let body = if health_json {
        serde_json::to_vec(&HealthJsonBody {
            status: component.status().health_json_status(),
            checks: [health_json_entry(name, component, details)]
                .into_iter()
                .collect(),
        })
    } else {
        serde_json::to_vec(&ActuatorBody::component(component, details))
    };
    (component.status().http_status(), body.unwrap_or_default())
}
