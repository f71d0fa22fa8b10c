//! Job ids as GitHub matches them: ignoring ASCII case (`needs: [Build]` names job `build`).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use rustc_hash::FxBuildHasher;

/// Job ids (ignoring case) → `V`. Hashed with FxHash: SipHash's per-key cost dominated
/// looking up the 90,000 `needs` entries of a large workflow.
pub type CaselessMap<'a, V> = HashMap<Caseless<'a>, V, FxBuildHasher>;

/// A set of job ids ignoring case (see [`CaselessMap`]).
pub type CaselessSet<'a> = HashSet<Caseless<'a>, FxBuildHasher>;

/// A string that compares and hashes ignoring ASCII case, without a lower-cased copy: a
/// workflow of 1000 jobs with 100 `needs` each looks up 90,000 ids, and allocating a
/// lower-cased key per lookup made loading allocation-bound.
#[derive(Clone, Copy, Debug)]
pub struct Caseless<'a>(pub &'a str);

impl PartialEq for Caseless<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for Caseless<'_> {}

impl Hash for Caseless<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Lower-case through a small buffer so the hasher sees whole chunks, as for a `str`.
        let mut buf = [0u8; 32];
        for chunk in self.0.as_bytes().chunks(buf.len()) {
            let part = &mut buf[..chunk.len()];
            part.copy_from_slice(chunk);
            part.make_ascii_lowercase();
            state.write(part);
        }
        // Ends the value like `str` does, so `("ab", "c")` and `("a", "bc")` differ.
        state.write_u8(0xff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn equal_ignoring_ascii_case_hash_alike() {
        let s = std::collections::hash_map::RandomState::new();
        let long = "Build-And-Test_Of_A_Very_Long_Job_Identifier_Beyond_32";
        for (a, b) in [
            ("build", "BUILD"),
            ("L0_1", "l0_1"),
            (long, &long.to_ascii_lowercase()),
            ("", ""),
        ] {
            assert_eq!(Caseless(a), Caseless(b));
            assert_eq!(s.hash_one(Caseless(a)), s.hash_one(Caseless(b)), "{a}");
        }
        assert_ne!(Caseless("build"), Caseless("build2"));
        assert_ne!(
            Caseless("ä"),
            Caseless("Ä"),
            "only ASCII folds, as GitHub's ids are ASCII"
        );
        let mut set = CaselessSet::default();
        for id in ["a", "A", "b", "Bb", "bB"] {
            set.insert(Caseless(id));
        }
        assert_eq!(set.len(), 3);
        let map: CaselessMap<'_, usize> = [(Caseless("Build"), 0)].into_iter().collect();
        assert_eq!(map.get(&Caseless("bUILD")), Some(&0));
    }
}
