//! The Skill IQ assessment tags of the challenge and their related course tags.
//!
//! Assessment tags use their own naming (`c-sharp`, `node-js`, ...), unlike the
//! course tags (`c#`, `csharp`, `nodejs`, ...). Each entry below lists the
//! lower-case course tags an assessment is about; cohorts whose focal tags hit
//! those course tags take that assessment and score higher on it.

/// One assessment tag.
pub(crate) struct AssessmentTag {
    /// The tag as written in `user_assessment_scores.csv`.
    pub name: &'static str,
    /// Rows with this tag in the real 10k-user file: the global popularity.
    pub real_rows: u32,
    /// Related course tags, lower case (matched case-insensitively).
    pub related: &'static [&'static str],
}

const fn tag(
    name: &'static str,
    real_rows: u32,
    related: &'static [&'static str],
) -> AssessmentTag {
    AssessmentTag {
        name,
        real_rows,
        related,
    }
}

/// The 54 assessment tags of the real file, most frequent first.
pub(crate) const ASSESSMENT_TAGS: &[AssessmentTag] = &[
    tag(
        "c-sharp",
        848,
        &[
            "c#",
            "csharp",
            ".net",
            "dotnet",
            "linq",
            "async",
            "wpf",
            "windows-communication-foundation",
            "entity-framework",
        ],
    ),
    tag(
        "javascript",
        768,
        &[
            "javascript",
            "javascript-frameworks",
            "javascript-libraries",
            "es6",
            "typescript",
            "front-end-web-development",
        ],
    ),
    tag(
        "java",
        522,
        &[
            "java", "spring", "java-ee", "jvm", "swing", "jpa", "servlets",
        ],
    ),
    tag(
        "python",
        450,
        &[
            "python",
            "django",
            "data-science",
            "machine-learning",
            "data-analysis",
        ],
    ),
    tag(
        "html5",
        435,
        &[
            "html5",
            "html",
            "web-design",
            "responsive-design",
            "front-end-web-development",
        ],
    ),
    tag(
        "css",
        390,
        &[
            "css",
            "css3",
            "sass",
            "bootstrap",
            "responsive-design",
            "web-design",
        ],
    ),
    tag(
        "angular-js",
        283,
        &["angular", "javascript-frameworks", "spa"],
    ),
    tag(
        "aspnet-mvc-5",
        281,
        &[
            "asp.net",
            "aspdotnet",
            "asp.net-mvc",
            "aspdotnet-mvc",
            "mvc",
            "mvc5",
            "asp.net-core",
            "webapi",
        ],
    ),
    tag(
        "c-plus-plus",
        232,
        &["c++", "cplusplus", "cpp", "visual-c++", "c"],
    ),
    tag(
        "node-js",
        230,
        &[
            "nodejs",
            "express",
            "express.js",
            "back-end-web-development",
            "mongodb",
        ],
    ),
    tag(
        "mysql",
        221,
        &[
            "mysql",
            "sql",
            "relational-databases",
            "database-design",
            "php",
        ],
    ),
    tag(
        "powershell",
        172,
        &["powershell", "scripting", "it-automation", "automation"],
    ),
    tag(
        "the-scrum-framework",
        164,
        &["scrum", "agile", "kanban", "software-development-process"],
    ),
    tag("react", 161, &["react", "react.js", "redux", "flux"]),
    tag("jquery", 147, &["jquery", "javascript-libraries", "ajax"]),
    tag(
        "docker",
        127,
        &["docker", "containers", "microservices", "devops"],
    ),
    tag(
        "android",
        102,
        &[
            "android",
            "android-studio",
            "mobile-application-development",
            "kotlin",
        ],
    ),
    tag("angular", 92, &["angular", "angular-4", "typescript"]),
    tag(
        "graphic-design",
        87,
        &[
            "graphic-design",
            "visual-design",
            "print-design",
            "typography",
        ],
    ),
    tag(
        "active-directory-administration",
        70,
        &[
            "active-directory",
            "identity-management",
            "server-infrastructure",
        ],
    ),
    tag(
        "photoshop-photo-manipulation",
        61,
        &["photoshop", "image-editing", "retouching", "photography"],
    ),
    tag(
        "group-policy-administration-and-troubleshooting",
        57,
        &[
            "endpoint-management",
            "server-infrastructure",
            "troubleshooting",
        ],
    ),
    tag(
        "photoshop",
        48,
        &["photoshop", "image-editing", "digital-painting"],
    ),
    tag(
        "sharepoint",
        45,
        &["sharepoint", "messaging-collaboration", "office-365"],
    ),
    tag(
        "illustrator",
        43,
        &["illustration", "web-graphics", "svg", "graphic-design"],
    ),
    tag("after-effects-cc", 42, &["motion-graphics", "compositing"]),
    tag(
        "azure-administrator",
        42,
        &[
            "microsoft-azure",
            "windows-azure",
            "azure",
            "cloud-infrastructure",
        ],
    ),
    tag(
        "azure-for-developers",
        41,
        &[
            "microsoft-azure",
            "windows-azure",
            "azure",
            "cloud-services",
            "azure-storage",
            "paas",
        ],
    ),
    tag(
        "3ds-max-environment-modeling",
        40,
        &[
            "environment-modeling",
            "visualization-rendering",
            "environment-lighting",
        ],
    ),
    tag(
        "using-microsoft-office-2016",
        32,
        &[
            "microsoft-office",
            "office",
            "productivity-apps",
            "excel",
            "word",
            "powerpoint",
        ],
    ),
    tag(
        "azure-infrastructure-as-a-service",
        30,
        &[
            "iaas",
            "microsoft-azure",
            "windows-azure",
            "cloud-infrastructure",
            "virtualization",
        ],
    ),
    tag(
        "maya-modeling",
        27,
        &["3d-modeling", "3d-uv-mapping", "character-modeling"],
    ),
    tag(
        "unity-game-development-core-skills",
        24,
        &[
            "unity",
            "game-programming",
            "game-design",
            "game-development",
        ],
    ),
    tag(
        "maya-core-skills",
        24,
        &["3d-animation", "3d-rigging", "3d-lighting", "3d-modeling"],
    ),
    tag(
        "zbrush-core-skills",
        23,
        &[
            "3d-sculpting",
            "character-sculpting",
            "hard-surface-sculpting",
        ],
    ),
    tag(
        "game-environment-art",
        21,
        &[
            "game-art",
            "game-modeling",
            "game-texturing",
            "environment-modeling",
        ],
    ),
    tag(
        "getting-started-in-houdini",
        20,
        &["3d-dynamics", "vfx", "vfx-scripting"],
    ),
    tag(
        "maya-character-modeling",
        20,
        &["character-modeling", "character-design", "3d-modeling"],
    ),
    tag(
        "azure-solutions-architect",
        18,
        &[
            "microsoft-azure",
            "cloud-platforms",
            "cloud-computing",
            "enterprise-architecture",
        ],
    ),
    tag(
        "security-for-hackers-and-developers",
        16,
        &[
            "secure-coding",
            "website-security",
            "penetration-testing",
            "ethical-hacking",
            "information-security",
        ],
    ),
    tag(
        "puppet",
        15,
        &["configuration-management", "devops", "automation"],
    ),
    tag(
        "android-associate-developer",
        14,
        &["android", "mobile-application-development", "java"],
    ),
    tag(
        "maya-environment-modeling",
        14,
        &["environment-modeling", "game-modeling", "3d-modeling"],
    ),
    tag(
        "autocad",
        13,
        &[
            "drafting-drawings",
            "cad",
            "cad-drafting",
            "cad-documentation",
        ],
    ),
    tag(
        "premiere-pro-cc",
        13,
        &["video-editing", "color-grading", "video-production"],
    ),
    tag(
        "indesign-cc-creative-professionals",
        13,
        &[
            "desktop-publishing",
            "print-design",
            "digital-publishing",
            "page-layout",
        ],
    ),
    tag(
        "video-production",
        10,
        &["video-production", "video-editing", "photo-video", "audio"],
    ),
    tag(
        "fusion-360-core-skills",
        5,
        &[
            "parametric-modeling",
            "surface-modeling",
            "t-splines",
            "free-form",
            "3d-printing",
        ],
    ),
    tag(
        "revit-architecture",
        5,
        &[
            "architecture-modeling",
            "bim",
            "building-information-modeling",
            "construction-documentation",
        ],
    ),
    tag(
        "solidworks-core-skills",
        4,
        &[
            "part-modeling",
            "assembly-modeling",
            "drafting-drawings",
            "sheet-metal",
        ],
    ),
    tag(
        "maya-getting-started-with-modeling-in-maya",
        3,
        &["3d-modeling", "3d-uv-mapping"],
    ),
    tag(
        "windows-server-management",
        3,
        &[
            "server-infrastructure",
            "operating-systems",
            "windows-server",
            "server-administration",
        ],
    ),
    tag(
        "revit-architecture-modeling-families",
        2,
        &["architecture-modeling", "bim", "construction-modeling"],
    ),
    tag(
        "nuke-core-skills",
        1,
        &["compositing", "matchmoving", "vfx"],
    ),
];

/// Relative frequency of "a user has n assessments" for n = 1..=15, from the
/// real file (1,734 users with one, 561 with two, ...).
pub(crate) const ASSESSMENTS_PER_USER: [f64; 15] = [
    1734.0, 561.0, 329.0, 177.0, 133.0, 70.0, 41.0, 29.0, 15.0, 12.0, 4.0, 4.0, 2.0, 2.0, 1.0,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn given_the_table_then_it_has_54_unique_tags_with_lower_case_relations() {
        let names: BTreeSet<&str> = ASSESSMENT_TAGS.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), 54);
        assert_eq!(ASSESSMENT_TAGS.len(), 54);
        for a in ASSESSMENT_TAGS {
            assert!(
                !a.related.is_empty(),
                "{} has no related course tags",
                a.name
            );
            for r in a.related {
                assert_eq!(
                    *r,
                    r.to_lowercase(),
                    "related tag of {} is not lower case",
                    a.name
                );
            }
        }
    }
}
