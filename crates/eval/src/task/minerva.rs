//! MATH in lm-eval 0.4.13's `minerva_math` form (`tasks/minerva_math/utils.py`), ported: the
//! 4-shot Minerva prompt (Lewkowycz et al., 2022), the gold answer taken from the last `\boxed{}`
//! of the reference solution, the model's answer taken from "Final Answer: The final answer is
//! ... I hope it is correct.", both put through `normalize_final_answer`, then `is_equiv`.
//!
//! `is_equiv` is where we differ: lm-eval accepts identical strings, then asks sympy whether
//! `simplify(parse_latex(a) - parse_latex(b)) == 0`. We have no computer algebra system; after
//! the same identical-string rule we evaluate both sides numerically ([`crate::metrics::latex`]:
//! arithmetic, fractions, roots, powers, π, a few functions, one-letter variables at fixed
//! points). What that subset cannot parse compares unequal, as sympy's parse failures do.
//! `math_verify` (HF's math-verify package) is not ported.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{json, Value as Json};

use crate::metrics::latex;
use crate::{EvalError, Result};

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// `last_boxed_only_string`: the last `\boxed{...}` (balanced braces) or `\fbox{...}`; for
/// `\boxed x`, the text up to the next `$`.
pub fn last_boxed_only_string(s: &str) -> Option<String> {
    if let Some(rest) = s.split("\\boxed ").last().filter(|_| s.contains("\\boxed ")) {
        return Some(format!("\\boxed {}", rest.split('$').next().unwrap_or_default()));
    }
    let idx = s.rfind("\\boxed").or_else(|| s.rfind("\\fbox"))?;
    let mut open = 0i32;
    for (i, c) in s[idx..].char_indices() {
        match c {
            '{' => open += 1,
            '}' => {
                open -= 1;
                if open == 0 {
                    return Some(s[idx..=idx + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// `remove_boxed`: the inside of `\boxed{...}` or what follows `\boxed `; `None` where lm-eval's
/// assertions would fail (e.g. an `\fbox`).
pub fn remove_boxed(s: &str) -> Option<&str> {
    if s.contains("\\boxed ") {
        return s.strip_prefix("\\boxed ");
    }
    s.strip_prefix("\\boxed{")?.strip_suffix('}')
}

/// `get_unnormalized_answer`: the text after "Final Answer: The final answer is", up to "I hope it
/// is correct." (appended once, so an unfinished sentence still ends), or `[invalidanswer]`.
pub fn get_unnormalized_answer(text: &str) -> String {
    static FINAL: OnceLock<Regex> = OnceLock::new();
    let text = format!("{text}I hope it is correct.");
    let r = re(&FINAL, r"Final Answer: The final answer is(.*?). I hope it is correct.");
    r.captures(&text).map_or_else(|| "[invalidanswer]".to_string(), |c| c[1].trim().to_string())
}

const SUBSTITUTIONS: [(&str, &str); 10] = [
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
];

const REMOVED_EXPRESSIONS: [&str; 42] = [
    "square",
    "ways",
    "integers",
    "dollars",
    "mph",
    "inches",
    "ft",
    "hours",
    "km",
    "units",
    "\\ldots",
    "sue",
    "points",
    "feet",
    "minutes",
    "digits",
    "cents",
    "degrees",
    "cm",
    "gm",
    "pounds",
    "meters",
    "meals",
    "edges",
    "students",
    "childrentickets",
    "multiples",
    "\\text{s}",
    "\\text{.}",
    "\\text{\ns}",
    "\\text{}^2",
    "\\text{}^3",
    "\\text{\n}",
    "\\text{}",
    "\\mathrm{th}",
    "^\\circ",
    "^{\\circ}",
    "\\;",
    ",\\!",
    "{,}",
    "\"",
    "\\dots",
];

/// Python `str.isalpha` for our word list.
fn is_word(e: &str) -> bool {
    !e.is_empty() && e.chars().all(char::is_alphabetic)
}

/// `re.sub(rf"(?<!\\)\b{word}\b", "", s)`: whole words not right after a backslash.
fn remove_word(s: &str, r: &Regex) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for m in r.find_iter(s) {
        if s[..m.start()].ends_with('\\') {
            continue;
        }
        out.push_str(&s[last..m.start()]);
        last = m.end();
    }
    out.push_str(&s[last..]);
    out
}

/// Removes `word` everywhere except inside LaTeX command names (`re.split(r"(\\[a-zA-Z]+)")`,
/// even segments only), so "ft" cannot eat into `\left`.
fn remove_outside_commands(s: &str, word: &str) -> String {
    static CMD: OnceLock<Regex> = OnceLock::new();
    let cmd = re(&CMD, r"\\[a-zA-Z]+");
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for m in cmd.find_iter(s) {
        out.push_str(&s[last..m.start()].replace(word, ""));
        out.push_str(m.as_str());
        last = m.end();
    }
    out.push_str(&s[last..].replace(word, ""));
    out
}

/// lm-eval 0.4.13 `normalize_final_answer` (Lewkowycz et al. appendix D, with lm-eval's fixes:
/// unit words removed only as words or outside command names, indexed roots kept, commas
/// removed only as thousands separators).
pub fn normalize_final_answer(answer: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            (r"(.*?)(\$)(.*?)(\$)(.*)", "$$${3}$$"),
            (r"(\\text\{)(.*?)(\})", "${2}"),
            (r"(\\textbf\{)(.*?)(\})", "${2}"),
            (r"(\\overline\{)(.*?)(\})", "${2}"),
            (r"(\\boxed\{)(.*)(\})", "${2}"),
            (r"(frac)([^{])(.)", "frac{${2}}{${3}}"),
            (r"(sqrt)(\[[^\]]*\])(\w)", "${1}${2}{${3}}"),
            // `(sqrt)(?!\[)([^{])`: the look-ahead only excludes `[` from the next character.
            (r"(sqrt)([^{\[])", "sqrt{${2}}"),
        ]
        .into_iter()
        .map(|(p, r)| (Regex::new(p).expect("static regex"), r))
        .collect()
    });
    static THOUSANDS: OnceLock<Regex> = OnceLock::new();
    let mut s = answer.rsplit('=').next().unwrap_or_default().to_string();
    static WORDS: OnceLock<Vec<Regex>> = OnceLock::new();
    let words = WORDS.get_or_init(|| {
        let words = REMOVED_EXPRESSIONS.iter().filter(|e| is_word(e));
        words.map(|w| Regex::new(&format!(r"\b{}\b", regex::escape(w))).expect("word regex")).collect()
    });
    for w in words {
        s = remove_word(&s, w);
    }
    for (before, after) in SUBSTITUTIONS {
        s = s.replace(before, after);
    }
    for e in REMOVED_EXPRESSIONS {
        s = if is_word(e) { remove_outside_commands(&s, e) } else { s.replace(e, "") };
    }
    for (r, rep) in rules {
        s = r.replace_all(&s, *rep).into_owned();
    }
    s = s.replace('$', "");
    if re(&THOUSANDS, r"^-?\d{1,3}(,\d{3})+$").is_match(&s) {
        s = s.replace(',', "");
    }
    s
}

/// `is_equiv` on normalised answers: identical (and not empty), else numerically equal.
pub fn is_equiv(a: &str, b: &str) -> bool {
    (!a.is_empty() && a == b) || latex::equivalent(a, b)
}

fn field<'a>(doc: &'a Json, k: &str) -> Result<&'a str> {
    doc.get(k).and_then(Json::as_str).ok_or_else(|| EvalError::Config(format!("minerva_math: no string field `{k}`")))
}

/// `process_docs`: `answer` = the normalised content of the solution's last `\boxed{}`.
pub fn process_doc(doc: &Json) -> Result<Json> {
    let solution = field(doc, "solution")?;
    let boxed = last_boxed_only_string(solution).ok_or_else(|| {
        EvalError::Config(format!("minerva_math: solution has no \\boxed{{}} answer: {:.80}", solution))
    })?;
    let inner =
        remove_boxed(&boxed).ok_or_else(|| EvalError::Config(format!("minerva_math: cannot unbox {boxed:.80}")))?;
    let mut out = doc.clone();
    out["answer"] = json!(normalize_final_answer(inner));
    Ok(out)
}

pub fn doc_to_text(doc: &Json) -> Result<Json> {
    Ok(json!(format!("Problem:\n{}\n\nSolution:", field(doc, "problem")?)))
}

/// `process_results`: 1.0 when the generation's final answer is equivalent to the gold.
pub fn exact_match(doc: &Json, generation: &str) -> Result<f64> {
    let pred = normalize_final_answer(&get_unnormalized_answer(generation));
    Ok(f64::from(u8::from(is_equiv(&pred, field(doc, "answer")?))))
}

/// `list_fewshot_samples`: the four Minerva examples (their `few_shot` key makes
/// `doc_to_target` give the whole solution).
pub fn fewshot_samples() -> Vec<Json> {
    const SAMPLES: [(&str, &str); 4] = [
        (
            "Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.",
            "The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct.",
        ),
        (
            "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$",
            "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct.",
        ),
        (
            "Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?",
            "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\nFinal Answer: The final answer is $16$. I hope it is correct.",
        ),
        (
            "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.",
            "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
        ),
    ];
    SAMPLES.iter().map(|(p, s)| json!({"problem": p, "solution": s, "few_shot": "1"})).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases lm-eval 0.4.13's `normalize_final_answer` documents in its comments.
    #[test]
    fn normalize_documented_cases() {
        let n = normalize_final_answer;
        assert_eq!(n("\\fracab"), "\\frac{a}{b}");
        assert_eq!(n("\\frac{abc}{bef}"), "\\frac{abc}{bef}");
        assert_eq!(n("\\fracabc"), "\\frac{a}{b}c");
        assert_eq!(n("\\sqrta"), "\\sqrt{a}");
        assert_eq!(n("\\sqrtab"), "\\sqrt{a}b");
        assert_eq!(n("\\sqrt[3]a"), "\\sqrt[3]{a}");
        assert_eq!(n("\\sqrt[3]{8}"), "\\sqrt[3]{8}");
        // "2\pi cm" loses "cm"; "\left" keeps its "ft".
        assert_eq!(n("2\\pi cm"), "2\\pi");
        assert_eq!(n("\\left( 3, \\frac{\\pi}{2} \\right)"), "\\left(3,\\frac{\\pi}{2}\\right)");
        // Thousands separators go; a bare tuple keeps its comma.
        assert_eq!(n("100,000"), "100000");
        assert_eq!(n("0,1"), "0,1");
        assert_eq!(n("-1,234,567"), "-1234567");
    }

    #[test]
    fn normalize_appendix_d_behaviour() {
        let n = normalize_final_answer;
        assert_eq!(n("x = 5"), "5");
        assert_eq!(n("$\\boxed{10}$"), "10");
        assert_eq!(n("\\text{(B)}"), "(B)");
        assert_eq!(n("5 \\text{ dollars}"), "5");
        assert_eq!(n("30^\\circ"), "30");
        assert_eq!(n("12 square units"), "12");
        assert_eq!(n("\\$3.50"), "3.50");
        assert_eq!(n("\\textbf{7}"), "7");
        assert_eq!(n("\\dfrac{1}{2}"), "\\dfrac{1}{2}");
        assert_eq!(n("10\\%"), "10\\%");
    }

    #[test]
    fn boxed_extraction() {
        let s = "so $r = 3$ and $\\theta = \\frac{\\pi}{2}$: $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$";
        let b = last_boxed_only_string(s).unwrap();
        assert_eq!(b, "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}");
        assert_eq!(remove_boxed(&b), Some("\\left( 3, \\frac{\\pi}{2} \\right)"));
        assert_eq!(last_boxed_only_string("a \\boxed 5$ b").as_deref(), Some("\\boxed 5"));
        assert_eq!(remove_boxed("\\boxed 5"), Some("5"));
        assert_eq!(last_boxed_only_string("\\boxed{unclosed"), None);
        assert_eq!(last_boxed_only_string("no box"), None);
        assert_eq!(remove_boxed("\\fbox{3}"), None);
    }

    #[test]
    fn final_answer_and_scoring() {
        let gen = " We get 4.\nFinal Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.\n";
        assert_eq!(get_unnormalized_answer(gen), "$\\frac{1}{2}$");
        // The appended ending closes an answer cut off by the stop sequence.
        assert_eq!(get_unnormalized_answer("Final Answer: The final answer is 7. "), "7");
        assert_eq!(get_unnormalized_answer("It is 7."), "[invalidanswer]");
        let doc = process_doc(&json!({"problem": "p", "solution": "Half: $\\boxed{0.5}$."})).unwrap();
        assert_eq!(doc["answer"], "0.5");
        assert_eq!(exact_match(&doc, gen).unwrap(), 1.0);
        assert_eq!(exact_match(&doc, "Final Answer: The final answer is $2$. I hope it is correct.").unwrap(), 0.0);
        assert_eq!(exact_match(&doc, "no answer").unwrap(), 0.0);
        assert!(process_doc(&json!({"problem": "p", "solution": "none"})).is_err());
        assert!(!is_equiv("", ""));
        assert!(is_equiv("(1,2)", "(1,2)"));
        assert_eq!(doc_to_text(&doc).unwrap(), json!("Problem:\np\n\nSolution:"));
        assert_eq!(fewshot_samples().len(), 4);
    }
}
