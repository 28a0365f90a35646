//! One manifest across regions: which region and project each entry registers in, the entries
//! grouped by them (each group gets its own client, limiters and active-job bound, as IMS
//! quotas are per region and project), and where each group sends its requests.
//!
//! An entry's region is its own `region:`, else `--region`, else `settings.region` (the
//! default region). Its project is its own `project_id:`, else
//! `settings.regions.<region>.project_id`, else, in the default region only, `--project-id`,
//! `settings.project_id` (then the environment's): a project ID names a project of one region,
//! so the top-level one never leaks into another region. The endpoints follow the same rule:
//! `settings.regions.<region>.endpoint`/`obs_endpoint`, else in the default region the flag or
//! `settings:`, else derived from the region name.

use crate::manifest::{Placement, Settings};
use crate::run::RunConfig;

use super::target::Location;

/// Where a group of entries registers: its region (`None`: no region anywhere, the endpoint
/// says where) and project (`None`: the environment's, in the default region only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub region: Option<String>,
    pub project_id: Option<String>,
}

/// The flags and the manifest's `settings:`, from which each group's settings are resolved.
#[derive(Clone, Copy)]
pub struct Layers<'a> {
    pub flags: &'a Settings,
    pub manifest: &'a Settings,
}

impl Layers<'_> {
    /// The region of the entries that name none.
    pub fn default_region(&self) -> Option<&str> {
        self.flags
            .region
            .as_deref()
            .or(self.manifest.region.as_deref())
    }

    fn is_default(&self, region: Option<&str>) -> bool {
        region == self.default_region()
    }

    fn own(&self, region: Option<&str>) -> Option<&crate::manifest::RegionSettings> {
        self.manifest.regions.get(region?)
    }

    /// The region and project of an entry whose own values are `own`.
    pub fn key_for(&self, own: Option<&Placement>) -> GroupKey {
        let region = own
            .and_then(|own| own.region.as_deref())
            .or(self.default_region());
        let from_region = self
            .own(region)
            .and_then(|settings| settings.project_id.as_deref());
        let from_top = if self.is_default(region) {
            self.flags
                .project_id
                .as_deref()
                .or(self.manifest.project_id.as_deref())
        } else {
            None
        };
        let project_id = own
            .and_then(|own| own.project_id.as_deref())
            .or(from_region)
            .or(from_top);
        GroupKey {
            region: region.map(String::from),
            project_id: project_id.map(String::from),
        }
    }

    /// Whether the environment's project ID may stand in for a group's missing one (only in
    /// the default region, as for the top-level `project_id`).
    pub fn takes_the_environment_project(&self, key: &GroupKey) -> bool {
        self.is_default(key.region.as_deref())
    }

    /// Where the group's IMS requests go (the endpoint `None`: derived from the region).
    pub fn location(&self, key: &GroupKey) -> Location {
        let region = key.region.as_deref();
        let top = || {
            self.flags
                .endpoint
                .clone()
                .or(self.manifest.endpoint.clone())
        };
        let endpoint = self
            .own(region)
            .and_then(|own| own.endpoint.clone())
            .or_else(|| self.is_default(region).then(top).flatten());
        Location {
            endpoint,
            region: key.region.clone(),
            project_id: key.project_id.clone(),
        }
    }

    /// The group's OBS endpoint for the preflight (`None`: derived from the region); `top` is
    /// the flag's or `settings:`'s, which belongs to the default region.
    pub fn obs_endpoint(&self, key: &GroupKey, top: Option<&str>) -> Option<String> {
        let region = key.region.as_deref();
        self.own(region)
            .and_then(|own| own.obs_endpoint.clone())
            .or_else(|| {
                self.is_default(region)
                    .then(|| top.map(String::from))
                    .flatten()
            })
    }

    /// The group's rates and bounds ([`RunConfig::for_region`]).
    pub fn config(&self, key: &GroupKey) -> RunConfig {
        RunConfig::for_region(self.flags, self.manifest, key.region.as_deref())
    }
}

/// `items` grouped by `key`, the groups in the order of their first item, the items of each
/// in their order.
pub fn group<T>(
    items: impl IntoIterator<Item = T>,
    mut key: impl FnMut(&T) -> GroupKey,
) -> Vec<(GroupKey, Vec<T>)> {
    let items = items.into_iter();
    // Most manifests are one group: room for every item at once, so that a 100,000-entry
    // list is not regrown (and briefly held twice) on its way into it.
    let room = items.size_hint().0;
    let mut groups: Vec<(GroupKey, Vec<T>)> = Vec::new();
    for item in items {
        let wanted = key(&item);
        match groups.iter_mut().find(|(k, _)| *k == wanted) {
            Some((_, members)) => members.push(item),
            None => {
                let mut members = Vec::with_capacity(if groups.is_empty() { room } else { 0 });
                members.push(item);
                groups.push((wanted, members));
            }
        }
    }
    if groups.len() > 1 {
        for (_, members) in &mut groups {
            members.shrink_to_fit();
        }
    }
    groups
}

/// The members of the group `key` (moved out; empty when there is no such group).
pub fn take_group<T>(groups: &mut [(GroupKey, Vec<T>)], key: &GroupKey) -> Vec<T> {
    groups
        .iter_mut()
        .find(|(k, _)| k == key)
        .map(|(_, members)| std::mem::take(members))
        .unwrap_or_default()
}

/// The keys of `first`'s groups, then those of `second`'s that `first` has not.
pub fn keys<A, B>(first: &[(GroupKey, A)], second: &[(GroupKey, B)]) -> Vec<GroupKey> {
    let mut keys: Vec<GroupKey> = first.iter().map(|(key, _)| key.clone()).collect();
    for (key, _) in second {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RegionSettings;

    fn manifest() -> Settings {
        let mut manifest = Settings {
            region: Some("ap-southeast-1".into()),
            project_id: Some("ap-project".into()),
            endpoint: Some("https://ims.ap.example".into()),
            ..Settings::default()
        };
        manifest.regions.insert(
            "eu-west-101".into(),
            RegionSettings {
                project_id: Some("eu-project".into()),
                endpoint: Some("https://ims.eu.example".into()),
                obs_endpoint: Some("https://obs.eu.example".into()),
                ..RegionSettings::default()
            },
        );
        manifest
    }

    fn placed(region: Option<&str>, project_id: Option<&str>) -> Placement {
        Placement {
            region: region.map(String::from),
            project_id: project_id.map(String::from),
        }
    }

    fn key(region: Option<&str>, project_id: Option<&str>) -> GroupKey {
        GroupKey {
            region: region.map(String::from),
            project_id: project_id.map(String::from),
        }
    }

    #[test]
    fn an_entry_takes_its_own_region_and_project_else_its_regions_else_the_default() {
        let flags = Settings::default();
        let manifest = manifest();
        let layers = Layers {
            flags: &flags,
            manifest: &manifest,
        };
        assert_eq!(
            layers.key_for(None),
            key(Some("ap-southeast-1"), Some("ap-project"))
        );
        assert_eq!(
            layers.key_for(Some(&placed(Some("eu-west-101"), None))),
            key(Some("eu-west-101"), Some("eu-project"))
        );
        assert_eq!(
            layers.key_for(Some(&placed(Some("eu-west-101"), Some("mine")))),
            key(Some("eu-west-101"), Some("mine"))
        );
        // The top-level project belongs to the default region only.
        let other = layers.key_for(Some(&placed(Some("la-south-2"), None)));
        assert_eq!(other, key(Some("la-south-2"), None));
        assert!(!layers.takes_the_environment_project(&other));
        assert!(layers.takes_the_environment_project(&layers.key_for(None)));
    }

    #[test]
    fn the_flags_region_and_project_are_the_defaults() {
        let flags = Settings {
            region: Some("eu-west-101".into()),
            project_id: Some("flag-project".into()),
            ..Settings::default()
        };
        let manifest = manifest();
        let layers = Layers {
            flags: &flags,
            manifest: &manifest,
        };
        // The region's own project wins over the flag, as for every per-region value.
        assert_eq!(
            layers.key_for(None),
            key(Some("eu-west-101"), Some("eu-project"))
        );
        // ap-southeast-1 is no longer the default region: no project.
        assert_eq!(
            layers.key_for(Some(&placed(Some("ap-southeast-1"), None))),
            key(Some("ap-southeast-1"), None)
        );
    }

    #[test]
    fn endpoints_come_from_the_region_else_the_top_level_in_the_default_region() {
        let flags = Settings::default();
        let manifest = manifest();
        let layers = Layers {
            flags: &flags,
            manifest: &manifest,
        };
        let eu = key(Some("eu-west-101"), Some("eu-project"));
        let ap = key(Some("ap-southeast-1"), None);
        let la = key(Some("la-south-2"), None);
        assert_eq!(
            layers.location(&eu).endpoint.as_deref(),
            Some("https://ims.eu.example")
        );
        assert_eq!(
            layers.location(&ap).endpoint.as_deref(),
            Some("https://ims.ap.example")
        );
        assert_eq!(
            layers.location(&la).endpoint,
            None,
            "derived from la-south-2"
        );
        let top = Some("https://obs.top.example");
        assert_eq!(
            layers.obs_endpoint(&eu, top).as_deref(),
            Some("https://obs.eu.example")
        );
        assert_eq!(layers.obs_endpoint(&ap, top).as_deref(), top);
        assert_eq!(layers.obs_endpoint(&la, top), None);
    }

    #[test]
    fn a_manifest_without_regions_is_one_group() {
        let flags = Settings::default();
        let manifest = Settings::default();
        let layers = Layers {
            flags: &flags,
            manifest: &manifest,
        };
        let groups = group(1..=5, |_| layers.key_for(None));
        assert_eq!(groups, vec![(GroupKey::default(), vec![1, 2, 3, 4, 5])]);
    }

    #[test]
    fn groups_keep_first_appearance_order_and_the_items_order() {
        let keys = [
            key(Some("b"), None),
            key(Some("a"), None),
            key(Some("b"), None),
            key(Some("b"), Some("p")),
            key(Some("a"), None),
        ];
        let groups = group(0..keys.len(), |i| keys[*i].clone());
        assert_eq!(
            groups,
            vec![
                (key(Some("b"), None), vec![0, 2]),
                (key(Some("a"), None), vec![1, 4]),
                (key(Some("b"), Some("p")), vec![3]),
            ]
        );
        let creates = vec![
            (key(Some("c"), None), vec!['x']),
            (key(Some("a"), None), vec!['y']),
        ];
        let all = super::keys(&groups, &creates);
        assert_eq!(all.len(), 4);
        assert_eq!(
            all[3],
            key(Some("c"), None),
            "groups with only entries to create last"
        );
        let mut groups = groups;
        assert_eq!(take_group(&mut groups, &key(Some("a"), None)), vec![1, 4]);
        assert!(take_group(&mut groups, &key(Some("a"), None)).is_empty());
        assert!(take_group(&mut groups, &key(Some("z"), None)).is_empty());
    }
}
