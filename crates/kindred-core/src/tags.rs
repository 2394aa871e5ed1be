//! One tag vocabulary across course tags, interests and assessments.
//!
//! The files spell one topic several ways: by case (`BIM`, `bim`), by symbol (`c#`,
//! `csharp`, `c-sharp`; `c++`, `cplusplus`, `c-plus-plus`; `.net`, `dotnet`), by separator
//! (`node-js`, `nodejs`; `back-end-web-development`, `backend-web-development`) and with
//! stray punctuation (`cad-`). Every tag is reduced to a [`key`]; tags with equal keys are
//! one tag, named by its commonest spelling. The rules:
//!
//! 1. lower-case;
//! 2. `#` becomes `sharp`, `+` becomes `plus`, `.` becomes `dot` (the files' own slugs
//!    spell the dot out: `aspdotnet`, `backbonedotjs`, `dotnet`);
//! 3. every character that is not a letter or a digit is dropped;
//! 4. [`ALIASES`] maps the keys of names the rules cannot join.
//!
//! On the challenge's `course_tags.csv` and `user_assessment_scores.csv` the rules join 18
//! groups of spellings (all of them the same topic) and the aliases two more.

/// Keys of other names for one topic (after the rules), with the key they mean.
pub const ALIASES: &[(&str, &str)] = &[
    // The assessments drop the dot of ASP.NET that the course tags spell out.
    ("aspnet", "aspdotnet"),
    ("aspnetcore", "aspdotnetcore"),
    ("aspnetmvc", "aspdotnetmvc"),
    ("aspnetmvc5", "aspdotnetmvc5"),
    // The assessment `angular-js`; the course tags of that time call it `angular`.
    ("angularjs", "angular"),
];

/// The key that identifies a tag across files and spellings.
pub fn key(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len() + 4);
    for c in tag.trim().chars().flat_map(char::to_lowercase) {
        match c {
            '#' => out.push_str("sharp"),
            '+' => out.push_str("plus"),
            '.' => out.push_str("dot"),
            c if c.is_alphanumeric() => out.push(c),
            _ => {}
        }
    }
    match ALIASES.iter().find(|(from, _)| *from == out) {
        Some((_, to)) => (*to).to_owned(),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_topic_share_a_key() {
        let groups: &[&[&str]] = &[
            &["c#", "csharp", "c-sharp", "C#"],
            &["c++", "cplusplus", "c-plus-plus"],
            &["f#", "f-sharp", "fsharp"],
            &["node-js", "nodejs", "Node-JS"],
            &[".net", "dotnet"],
            &["asp.net", "aspdotnet", "aspnet"],
            &["asp.net-mvc5", "aspnet-mvc-5"],
            &["back-end-web-development", "backend-web-development"],
            &["BIM", "bim"],
            &["CAD", "cad-", " cad "],
            &["google+", "googleplus"],
            &["angular-js", "angular"],
        ];
        for group in groups {
            let keys: Vec<String> = group.iter().map(|t| key(t)).collect();
            assert!(
                keys.windows(2).all(|w| w[0] == w[1]),
                "{group:?} -> {keys:?}"
            );
        }
    }

    #[test]
    fn different_topics_keep_different_keys() {
        let distinct = [
            "c",
            "c#",
            "c++",
            "f#",
            "r",
            "java",
            "javascript",
            "net",
            ".net",
            "sql",
            "nosql",
            "3d-modeling",
            "3d-rendering",
            "comptia-a+",
            "comptia-a",
        ];
        let mut keys: Vec<String> = distinct.iter().map(|t| key(t)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), distinct.len(), "{keys:?}");
    }

    #[test]
    fn keys_are_stable_under_their_own_rules() {
        for t in ["c#", "asp.net-mvc5", "Node-JS", "angular-js", "3D Modeling"] {
            assert_eq!(key(&key(t)), key(t), "{t}");
        }
    }

    #[test]
    fn aliases_point_at_keys_that_are_not_aliased_again() {
        for (from, to) in ALIASES {
            assert_eq!(key(from), *to);
            assert!(
                ALIASES.iter().all(|(f, _)| f != to),
                "{to} is aliased again"
            );
        }
    }
}
