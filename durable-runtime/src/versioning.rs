//! Comparing orchestration versions.

use std::cmp::Ordering;

/// Compares two version strings the way orchestration versioning needs: numerically, part by
/// part (`"1.10.0" > "1.9.0"`, `"2" == "2.0.0"`), a pre-release suffix (`"2.0.0-beta"`) sorting
/// before its release. An empty version (an instance scheduled without one) sorts before every
/// other version. Non-numeric parts compare as text.
///
/// ```
/// use std::cmp::Ordering;
/// use durable::compare_versions;
///
/// assert_eq!(compare_versions("2.0.0", "1.0.0"), Ordering::Greater);
/// assert_eq!(compare_versions("1.10.0", "1.9.9"), Ordering::Greater);
/// assert_eq!(compare_versions("2", "2.0.0"), Ordering::Equal);
/// assert_eq!(compare_versions("2.0.0-beta", "2.0.0"), Ordering::Less);
/// assert_eq!(compare_versions("", "1.0.0"), Ordering::Less);
/// // In an orchestrator:
/// // if compare_versions(&ctx.version(), "2.0.0").is_ge() { /* new code path */ }
/// ```
pub fn compare_versions(left: &str, right: &str) -> Ordering {
    let (left, right) = (left.trim(), right.trim());
    match (left.is_empty(), right.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (false, false) => {}
    }
    let (left_release, left_pre) = split_pre_release(left);
    let (right_release, right_pre) = split_pre_release(right);
    let left_parts: Vec<&str> = left_release.split('.').collect();
    let right_parts: Vec<&str> = right_release.split('.').collect();
    for i in 0..left_parts.len().max(right_parts.len()) {
        let l = left_parts.get(i).copied().unwrap_or("0");
        let r = right_parts.get(i).copied().unwrap_or("0");
        let ordering = match (l.parse::<u64>(), r.parse::<u64>()) {
            (Ok(l), Ok(r)) => l.cmp(&r),
            _ => l.cmp(r),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    match (left_pre, right_pre) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(l), Some(r)) => l.cmp(r),
    }
}

fn split_pre_release(version: &str) -> (&str, Option<&str>) {
    let version = version.strip_prefix('v').unwrap_or(version);
    match version.split_once('-') {
        Some((release, pre)) => (release, Some(pre)),
        None => (version, None),
    }
}
