//! Finding the known key an unknown key was probably meant to be.

/// The largest edit distance at which an unknown key still counts as a misspelling.
const MAXIMUM_MISSPELLING_DISTANCE: usize = 2;

/// Returns the known key that `unknown_key` most likely misspells, if any.
///
/// A key counts as a misspelling when its optimal-string-alignment distance (insertions,
/// deletions, substitutions and swaps of two neighbouring characters each count one) to a known
/// key is at most two, or when both are the same once every `_` is removed. The closest known key
/// wins; on a tie the one listed first in `known_keys` wins, so the answer is deterministic.
pub(crate) fn closest_known_key<'known>(
    unknown_key: &str,
    known_keys: &[&'known str],
) -> Option<&'known str> {
    let unknown_without_underscores = without_underscores(unknown_key);
    let mut best_match: Option<(usize, &'known str)> = None;
    for &known_key in known_keys {
        let distance = if unknown_without_underscores == without_underscores(known_key) {
            // Ranked as a single edit so that a swap of one character beats it, but a key that
            // only differs in its underscores beats anything further away.
            1
        } else {
            optimal_string_alignment_distance(unknown_key, known_key)
        };
        let is_better = match best_match {
            Some((best_distance, _)) => distance < best_distance,
            None => true,
        };
        if distance <= MAXIMUM_MISSPELLING_DISTANCE && is_better {
            best_match = Some((distance, known_key));
        }
    }
    best_match.map(|(_, known_key)| known_key)
}

/// Returns `text` without its `_` characters.
fn without_underscores(text: &str) -> String {
    text.chars().filter(|&character| character != '_').collect()
}

/// The optimal-string-alignment distance between two strings, counted in characters.
///
/// This is the Levenshtein distance plus swaps of two neighbouring characters as one edit, which
/// is how `hihg` for `high` is typed in practice.
fn optimal_string_alignment_distance(first: &str, second: &str) -> usize {
    let first: Vec<char> = first.chars().collect();
    let second: Vec<char> = second.chars().collect();
    let column_count = second.len() + 1;
    // Three rows are enough: a swap looks two rows back, everything else one row back.
    let mut row_before_previous: Vec<usize> = vec![0; column_count];
    let mut previous_row: Vec<usize> = (0..column_count).collect();
    let mut current_row: Vec<usize> = vec![0; column_count];
    for first_index in 1..=first.len() {
        current_row[0] = first_index;
        for second_index in 1..=second.len() {
            let substitution_cost = usize::from(first[first_index - 1] != second[second_index - 1]);
            let mut distance = (previous_row[second_index] + 1)
                .min(current_row[second_index - 1] + 1)
                .min(previous_row[second_index - 1] + substitution_cost);
            if first_index > 1
                && second_index > 1
                && first[first_index - 1] == second[second_index - 2]
                && first[first_index - 2] == second[second_index - 1]
            {
                distance = distance.min(row_before_previous[second_index - 2] + 1);
            }
            current_row[second_index] = distance;
        }
        std::mem::swap(&mut row_before_previous, &mut previous_row);
        std::mem::swap(&mut previous_row, &mut current_row);
    }
    previous_row[second.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_each_kind_of_edit_once() {
        assert_eq!(optimal_string_alignment_distance("", ""), 0);
        assert_eq!(optimal_string_alignment_distance("abc", ""), 3);
        assert_eq!(optimal_string_alignment_distance("", "abc"), 3);
        assert_eq!(optimal_string_alignment_distance("high", "high"), 0);
        assert_eq!(optimal_string_alignment_distance("hihg", "high"), 1);
        assert_eq!(optimal_string_alignment_distance("hgh", "high"), 1);
        assert_eq!(optimal_string_alignment_distance("hiigh", "high"), 1);
        assert_eq!(optimal_string_alignment_distance("hugh", "high"), 1);
        assert_eq!(optimal_string_alignment_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn close_misspellings_find_their_key_and_distant_ones_do_not() {
        let known_keys = [
            "synctime_high_threshold",
            "synctime_low_threshold",
            "rest_url",
        ];
        assert_eq!(
            closest_known_key("synctime_hihg_threshold", &known_keys),
            Some("synctime_high_threshold")
        );
        assert_eq!(
            closest_known_key("synctimelowthreshold", &known_keys),
            Some("synctime_low_threshold")
        );
        assert_eq!(closest_known_key("rest_uri", &known_keys), Some("rest_url"));
        assert_eq!(closest_known_key("language", &known_keys), None);
        assert_eq!(closest_known_key("rest_timeout", &known_keys), None);
    }
}
