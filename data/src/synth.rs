//! A synthetic `course_tags.csv`, used instead of the challenge's on request
//! (`CourseTags::Synthetic`, `--synthetic-catalogue`).
//!
//! Tags live in topic areas (3D, .NET, IT ops, ...). Each area has core tags
//! named like the real catalogue's (so the assessment mapping finds them) and
//! filler tags built from subject and aspect words. A course belongs to one
//! area and takes 1 to 15 tags, mostly from that area, with a heavy-tailed tag
//! popularity, so tags that belong together co-occur the way they do in the
//! real catalogue.

use std::collections::BTreeSet;

use crate::rng::{Rng, WeightedIndex};

/// Courses in the synthetic catalogue (the real one has 5,942).
pub(crate) const SYNTHETIC_COURSES: usize = 5_942;
/// Share of courses whose only tag row is the empty tag `""` (real: 112 of 5,942).
const EMPTY_TAG_SHARE: f64 = 0.02;
/// Filler tags per area, on top of its core tags (aims at about 1,000 tags).
const FILLERS_PER_AREA: usize = 34;
/// Chance that a course's extra tag comes from another area.
const CROSS_AREA_SHARE: f64 = 0.12;
/// Share of course ids ending in a number, like `zsphere-modeling-zbrush-3505`.
const NUMBERED_ID_SHARE: f64 = 0.38;

/// Relative frequency of "a course has n tags" for n = 1..=15, from the real file.
const TAGS_PER_COURSE: [f64; 15] = [
    3032.0, 1587.0, 706.0, 378.0, 96.0, 69.0, 33.0, 22.0, 7.0, 6.0, 1.0, 1.0, 3.0, 0.5, 1.0,
];

/// A topic area of the synthetic catalogue.
pub(crate) struct Area {
    /// Relative number of courses.
    weight: f64,
    /// Core tags, most popular first (names follow the real catalogue; a few
    /// are upper-case variants, as in the real file).
    pub(crate) core: &'static [&'static str],
    /// Subject words for filler tags and course ids.
    subjects: &'static [&'static str],
}

const fn area(
    weight: f64,
    core: &'static [&'static str],
    subjects: &'static [&'static str],
) -> Area {
    Area {
        weight,
        core,
        subjects,
    }
}

/// The topic areas. Core tag names are unique across areas.
pub(crate) const AREAS: &[Area] = &[
    area(
        14.0,
        &[
            "3d-modeling",
            "3d-rendering",
            "3d-texturing",
            "3d-animation",
            "3d-rigging",
            "3d-lighting",
            "3d-sculpting",
            "3d-dynamics",
            "creative-pipeline",
            "character-sculpting",
            "character-modeling",
            "character-animation",
            "hard-surface-modeling",
            "3d-uv-mapping",
            "3d-scripting",
            "environment-modeling",
            "environment-lighting",
            "hard-surface-sculpting",
            "character-design",
        ],
        &[
            "maya",
            "3ds-max",
            "zbrush",
            "houdini",
            "cinema-4d",
            "blender",
            "modo",
            "mudbox",
        ],
    ),
    area(
        5.0,
        &[
            "compositing",
            "vfx",
            "matchmoving",
            "vfx-scripting",
            "color-grading",
            "matte-painting",
        ],
        &["nuke", "fusion", "realflow", "mocha", "pftrack"],
    ),
    area(
        7.0,
        &[
            "illustration",
            "digital-painting",
            "graphic-design",
            "image-editing",
            "visual-design",
            "photoshop",
            "photography",
            "retouching",
            "print-design",
            "typography",
            "web-graphics",
            "svg",
            "concept-art",
        ],
        &[
            "illustrator",
            "photoshop-cc",
            "lightroom",
            "gimp",
            "painter",
        ],
    ),
    area(
        4.0,
        &[
            "motion-graphics",
            "video-editing",
            "2d-animation",
            "audio",
            "video-production",
            "photo-video",
            "digital-audio",
        ],
        &[
            "after-effects",
            "premiere",
            "final-cut",
            "audition",
            "toon-boom",
        ],
    ),
    area(
        4.0,
        &[
            "game-art",
            "game-design",
            "game-programming",
            "game-modeling",
            "game-texturing",
            "unity",
            "game-development",
        ],
        &["unreal", "unity3d", "cryengine", "monogame", "gamemaker"],
    ),
    area(
        5.0,
        &[
            "part-modeling",
            "assembly-modeling",
            "drafting-drawings",
            "parametric-modeling",
            "surface-modeling",
            "design-for-manufacturing",
            "fea-simulation",
            "sheet-metal",
            "cad-drafting",
            "cad-documentation",
            "3d-printing",
            "free-form",
            "t-splines",
            "CAD",
        ],
        &[
            "solidworks",
            "inventor",
            "fusion-360",
            "catia",
            "creo",
            "autocad",
        ],
    ),
    area(
        4.0,
        &[
            "architecture-modeling",
            "visualization-rendering",
            "bim",
            "construction-documentation",
            "building-information-modeling",
            "construction-modeling",
            "4d-bim",
            "structural-modeling",
            "BIM",
        ],
        &["revit", "navisworks", "sketchup", "civil-3d", "vray"],
    ),
    area(
        6.0,
        &[
            "c#",
            "csharp",
            ".net",
            "dotnet",
            "asp.net",
            "aspdotnet",
            "wpf",
            "windows-communication-foundation",
            "linq",
            "async",
            "entity-framework",
            "asp.net-mvc",
            "aspdotnet-mvc",
            "mvc",
            "asp.net-core",
            "webapi",
            "mvc5",
            "visual-studio",
            "unit-testing",
            "tfs",
            "f#",
            "fsharp",
            "Team-Foundation-Server",
        ],
        &["dotnet", "csharp", "aspnet", "xamarin", "wcf", "nuget"],
    ),
    area(
        7.0,
        &[
            "javascript",
            "angular",
            "responsive-design",
            "javascript-libraries",
            "front-end-web-development",
            "jquery",
            "html5",
            "css",
            "javascript-frameworks",
            "react.js",
            "typescript",
            "web-design",
            "css3",
            "html",
            "spa",
            "es6",
            "bootstrap",
            "sass",
            "ajax",
            "redux",
            "react",
            "angular-4",
            "flux",
        ],
        &["javascript", "angularjs", "vue", "ember", "webpack", "css"],
    ),
    area(
        4.0,
        &[
            "nodejs",
            "php",
            "ruby",
            "ruby-on-rails",
            "back-end-web-development",
            "rest",
            "api-design",
            "mongodb",
            "web-services",
            "express.js",
            "express",
        ],
        &["node", "php", "rails", "laravel", "graphql"],
    ),
    area(
        5.0,
        &[
            "java",
            "android",
            "ios",
            "swift",
            "mobile-application-development",
            "spring",
            "objective-c",
            "java-ee",
            "jvm",
            "swing",
            "jpa",
            "servlets",
            "android-studio",
            "kotlin",
        ],
        &["java", "spring", "android", "ios", "xcode"],
    ),
    area(
        5.0,
        &[
            "data-analysis",
            "python",
            "big-data",
            "business-intelligence",
            "data-visualization",
            "machine-learning",
            "data-science",
            "hadoop",
            "django",
            "r-framework",
        ],
        &["python", "pandas", "spark", "tableau", "hadoop"],
    ),
    area(
        4.0,
        &[
            "database-administration",
            "sql-server",
            "t-sql",
            "data-warehousing",
            "postgresql",
            "oracle-database",
            "database-design",
            "relational-databases",
            "nosql",
            "mysql",
            "sql",
        ],
        &["sql-server", "oracle", "postgres", "ssis", "mongodb"],
    ),
    area(
        4.0,
        &[
            "automation",
            "devops",
            "configuration-management",
            "scripting",
            "containers",
            "continuous-integration",
            "git",
            "docker",
            "microservices",
            "it-automation",
            "powershell",
            "continuous-delivery",
            "source-control",
        ],
        &[
            "docker",
            "kubernetes",
            "puppet",
            "chef",
            "ansible",
            "jenkins",
        ],
    ),
    area(
        5.0,
        &[
            "cloud-computing",
            "microsoft-azure",
            "windows-azure",
            "cloud-services",
            "cloud-platforms",
            "aws",
            "iaas",
            "cloud-infrastructure",
            "distributed-systems",
            "azure",
            "paas",
            "enterprise-architecture",
            "azure-storage",
            "Cloud-computing",
        ],
        &["azure", "aws", "gcp", "openstack"],
    ),
    area(
        7.0,
        &[
            "server-infrastructure",
            "virtualization",
            "endpoint-management",
            "operating-systems",
            "it-fundamentals",
            "storage",
            "disaster-recovery",
            "troubleshooting",
            "high-availability",
            "linux",
            "windows-server",
            "server-administration",
            "identity-management",
            "active-directory",
        ],
        &[
            "windows-server",
            "sccm",
            "hyper-v",
            "vmware",
            "exchange",
            "linux",
        ],
    ),
    area(
        4.0,
        &[
            "network-infrastructure",
            "network-security",
            "hardware",
            "networking",
            "routing-switching",
            "wireless-networking",
        ],
        &["cisco", "ccna", "comptia", "juniper", "wireshark"],
    ),
    area(
        5.0,
        &[
            "information-security",
            "penetration-testing",
            "secure-coding",
            "digital-forensics",
            "security-assessment",
            "incident-response",
            "security-operations",
            "cryptography",
            "website-security",
            "ethical-hacking",
            "PTES",
        ],
        &["kali", "metasploit", "cissp", "owasp", "splunk"],
    ),
    area(
        4.0,
        &[
            "messaging-collaboration",
            "productivity-apps",
            "microsoft-office",
            "office",
            "sharepoint",
            "excel",
            "office-365",
            "word",
            "powerpoint",
            "visio",
            "outlook",
        ],
        &["excel", "sharepoint", "office-365", "outlook", "access"],
    ),
    area(
        4.0,
        &[
            "project-management",
            "soft-skills",
            "communication",
            "career",
            "leadership",
            "agile",
            "business-analysis",
            "risk-management",
            "scrum",
            "kanban",
            "software-development-process",
        ],
        &["pmp", "agile", "leadership", "itil", "prince2"],
    ),
    area(
        1.5,
        &[
            "desktop-publishing",
            "digital-publishing",
            "page-layout",
            "indesign",
        ],
        &["indesign", "acrobat", "publisher"],
    ),
    area(
        2.0,
        &[
            "c++",
            "cplusplus",
            "cpp",
            "algorithms",
            "data-structures",
            "embedded-systems",
            "c",
            "visual-c++",
        ],
        &["cpp", "embedded", "rust", "golang", "assembly"],
    ),
];

/// Aspect words for filler tags (`maya-scripting`, `azure-security`, ...).
const ASPECTS: &[&str] = &[
    "fundamentals",
    "essentials",
    "advanced",
    "scripting",
    "workflow",
    "tips",
    "best-practices",
    "performance",
    "testing",
    "security",
    "deployment",
    "administration",
    "troubleshooting",
    "integration",
    "architecture",
    "design",
    "migration",
    "automation",
    "plugins",
    "api",
    "tools",
    "certification",
    "patterns",
    "optimization",
    "debugging",
    "monitoring",
    "networking",
    "rendering",
    "modeling",
    "animation",
    "data",
    "reporting",
    "mobile",
    "cloud",
    "ui",
    "extensions",
    "configuration",
    "customization",
    "internals",
    "interop",
];

/// Words for course titles (`...-fundamentals-getting-started-1234`).
const TITLE_WORDS: &[&str] = &[
    "introduction",
    "fundamentals",
    "getting-started",
    "beyond-the-basics",
    "deep-dive",
    "in-practice",
    "essentials",
    "advanced",
    "best-practices",
    "quick-start",
    "workflow",
    "for-beginners",
    "techniques",
    "mastering",
    "building",
    "creating",
    "designing",
    "practical",
    "real-world",
    "tips-and-tricks",
    "projects",
    "patterns",
    "core-concepts",
    "playbook",
    "hands-on",
    "first-look",
    "whats-new",
    "production",
    "pipeline",
    "series",
];

/// A synthetic catalogue as `(course_id, tag)` rows sorted by course id, tags
/// of one course in their drawn order; untagged courses have one `""` row.
pub(crate) fn synthesize(rng: &mut Rng) -> Vec<(String, String)> {
    let vocab = area_vocabularies(rng);
    let area_pick = WeightedIndex::new(AREAS.iter().map(|a| a.weight)).expect("areas have weight");
    // Zipf-like popularity inside each area: the first core tags dominate.
    let tag_picks: Vec<WeightedIndex> = vocab
        .iter()
        .map(|tags| {
            WeightedIndex::new((0..tags.len()).map(|rank| 1.0 / (rank as f64 + 1.0).powf(1.15)))
                .expect("areas have tags")
        })
        .collect();
    let count_pick = WeightedIndex::new(TAGS_PER_COURSE).expect("positive weights");

    let mut ids = BTreeSet::new();
    let mut courses: Vec<(String, Vec<&str>)> = Vec::with_capacity(SYNTHETIC_COURSES);
    while courses.len() < SYNTHETIC_COURSES {
        let home = area_pick.sample(rng);
        let mut tags: Vec<&str> = Vec::new();
        if !rng.chance(EMPTY_TAG_SHARE) {
            let want = count_pick.sample(rng) + 1;
            let mut attempts = 0;
            while tags.len() < want && attempts < want * 20 {
                attempts += 1;
                let a = if tags.is_empty() || !rng.chance(CROSS_AREA_SHARE) {
                    home
                } else {
                    rng.index(AREAS.len())
                };
                let tag = vocab[a][tag_picks[a].sample(rng)].as_str();
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
        let id = course_id(rng, &AREAS[home], tags.first().copied());
        if ids.insert(id.clone()) {
            courses.push((id, tags));
        }
    }
    courses.sort_by(|a, b| a.0.cmp(&b.0));

    let mut rows = Vec::new();
    for (id, tags) in courses {
        if tags.is_empty() {
            rows.push((id, String::new()));
        } else {
            rows.extend(tags.into_iter().map(|t| (id.clone(), t.to_owned())));
        }
    }
    rows
}

/// Each area's tags: its core tags, then filler tags `subject-aspect` in a
/// random order. Names are unique across all areas.
fn area_vocabularies(rng: &mut Rng) -> Vec<Vec<String>> {
    let mut taken: BTreeSet<String> = AREAS
        .iter()
        .flat_map(|a| a.core.iter().map(|t| (*t).to_owned()))
        .collect();
    AREAS
        .iter()
        .map(|a| {
            let mut combos: Vec<String> = a
                .subjects
                .iter()
                .flat_map(|s| ASPECTS.iter().map(move |x| format!("{s}-{x}")))
                .collect();
            rng.shuffle(&mut combos);
            let mut tags: Vec<String> = a.core.iter().map(|t| (*t).to_owned()).collect();
            for combo in combos {
                if tags.len() >= a.core.len() + FILLERS_PER_AREA {
                    break;
                }
                if taken.insert(combo.clone()) {
                    tags.push(combo);
                }
            }
            tags
        })
        .collect()
}

/// A slug such as `maya-character-modeling-fundamentals-1286`.
fn course_id(rng: &mut Rng, area: &Area, first_tag: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if rng.chance(0.7) {
        parts.push(area.subjects[rng.index(area.subjects.len())].to_owned());
    }
    match first_tag {
        Some(tag) if rng.chance(0.6) => parts.push(slug(tag)),
        _ => parts.push(slug(area.core[rng.index(area.core.len())])),
    }
    for _ in 0..rng.between(1, 2) {
        parts.push(TITLE_WORDS[rng.index(TITLE_WORDS.len())].to_owned());
    }
    if rng.chance(NUMBERED_ID_SHARE) {
        parts.push(rng.between(1, 3_700).to_string());
    }
    parts.join("-")
}

/// Lower-case `[a-z0-9-]` form of a tag (`c#` -> `csharp`, `.net` -> `dotnet`).
fn slug(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len() + 4);
    for c in tag.chars() {
        match c {
            '#' => out.push_str("sharp"),
            '+' => out.push_str("plus"),
            '.' if out.is_empty() => out.push_str("dot"),
            '.' => out.push('-'),
            c if c.is_ascii_alphanumeric() || c == '-' => out.push(c.to_ascii_lowercase()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assessments::ASSESSMENT_TAGS;
    use std::collections::BTreeMap;

    #[test]
    fn given_the_areas_then_core_tags_are_unique_and_cover_every_assessment() {
        let mut seen = BTreeSet::new();
        for a in AREAS {
            for t in a.core {
                assert!(
                    seen.insert(t.to_lowercase()) || *t != t.to_lowercase(),
                    "duplicate core tag {t}"
                );
            }
        }
        for a in ASSESSMENT_TAGS {
            assert!(
                a.related.iter().any(|r| seen.contains(*r)),
                "assessment {} has no related synthetic course tag",
                a.name
            );
        }
    }

    #[test]
    fn given_tags_with_symbols_when_slugging_then_ids_stay_plain() {
        assert_eq!(slug("c#"), "csharp");
        assert_eq!(slug(".net"), "dotnet");
        assert_eq!(slug("c++"), "cplusplus");
        assert_eq!(slug("react.js"), "react-js");
        assert_eq!(slug("BIM"), "bim");
    }

    #[test]
    fn given_a_seed_when_synthesizing_then_the_catalogue_looks_like_the_real_one() {
        let rows = synthesize(&mut Rng::from_seed(42));
        let mut per_course: BTreeMap<&str, usize> = BTreeMap::new();
        let mut tags = BTreeSet::new();
        let mut empty = 0;
        for (c, t) in &rows {
            *per_course.entry(c).or_default() += 1;
            if t.is_empty() {
                empty += 1;
            } else {
                tags.insert(t.as_str());
            }
        }
        assert_eq!(per_course.len(), SYNTHETIC_COURSES);
        let mut counts: Vec<usize> = per_course.values().copied().collect();
        counts.sort_unstable();
        assert_eq!(counts[counts.len() / 2], 1, "median tags per course");
        assert!(*counts.last().unwrap() <= 15);
        let empty_share = empty as f64 / SYNTHETIC_COURSES as f64;
        assert!(
            (0.01..0.03).contains(&empty_share),
            "empty share {empty_share}"
        );
        assert!((800..1_200).contains(&tags.len()), "{} tags", tags.len());
        assert!(tags.contains("BIM") && tags.contains("bim"));
        for (c, _) in &rows {
            assert!(
                c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{c}"
            );
        }
    }
}
