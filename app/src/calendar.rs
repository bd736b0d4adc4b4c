//! Which zone a community's calendar is in, by the rule the read models
//! apply too: the zone its set-up names when it is a zone the server knows,
//! else the default. The server refuses unknown zones, but an older history
//! may hold one, and it must not stop that community's processes; it reads
//! as the default until an admin corrects it (`setTimeZone`).

use domain::community::{Community, DEFAULT_TIME_ZONE};

/// Whether `name` is a zone of the IANA database the server ships, spelled
/// as it spells it.
pub fn is_known_zone(name: &str) -> bool {
    name.parse::<chrono_tz::Tz>()
        .is_ok_and(|zone| zone.name() == name)
}

/// The zone `community`'s days and months are counted in.
pub fn zone_of(community: &Community) -> &str {
    if is_known_zone(&community.time_zone) {
        &community.time_zone
    } else {
        DEFAULT_TIME_ZONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zones_the_server_knows_are_known() {
        for (name, known) in [
            ("Asia/Shanghai", true),
            ("Asia/Urumqi", true),
            ("Etc/GMT-8", true),
            ("Mars/Olympus", false),
            ("asia/shanghai", false),
            ("UTC+8", false),
            ("", false),
        ] {
            assert_eq!(is_known_zone(name), known, "{name}");
        }
        let mut community = Community {
            time_zone: "Mars/Olympus".into(),
            ..Community::default()
        };
        assert_eq!(zone_of(&community), DEFAULT_TIME_ZONE);
        community.time_zone = "Asia/Urumqi".into();
        assert_eq!(zone_of(&community), "Asia/Urumqi");
    }
}
