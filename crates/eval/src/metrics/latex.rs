//! Numeric equivalence of two short LaTeX answers, standing in for sympy's
//! `simplify(parse_latex(a) - parse_latex(b)) == 0` in MATH scoring (see `task::minerva`).
//!
//! The grammar is the part of LaTeX that answers use for a single value: numbers, `+ - * /`,
//! `\cdot \times \div`, `^`, implicit products (`2\pi`, `3x`), `( )`, `{ }`, `\left( \right)`,
//! `\frac \dfrac \tfrac`, `\sqrt{}` and `\sqrt[n]{}`, `\pi`, `\sin \cos \tan \ln \log \exp`, and
//! one-letter variables. Expressions are compared at three fixed assignments of the variables,
//! with a relative tolerance of 1e-9 (sympy's check is exact; `0.333` and `\frac{1}{3}` are
//! unequal under both). A decimal number against an irrational value (`1.4142135623730951` vs
//! `\sqrt{2}`) is unequal, as sympy's Float arithmetic leaves a residue there (it also does
//! for `0.5\pi` vs `\frac{\pi}{2}`, which sympy folds to zero: a known difference). Anything
//! outside the grammar (tuples, intervals, sets, matrices, text) does not parse and so is not
//! equivalent, as when sympy fails to parse. Like sympy, a valid expression followed by a comma
//! or an unmatched closing bracket is read up to there ("3,5,7" equals "3").

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A number and whether it was written with a decimal point.
    Num(f64, bool),
    Var(char),
    Cmd(String),
    Sym(char),
}

fn lex(s: &str) -> Option<Vec<Tok>> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit() || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                i += 1;
            }
            let text: String = c[start..i].iter().collect();
            out.push(Tok::Num(text.parse().ok()?, text.contains('.')));
        } else if ch == '\\' {
            let start = i + 1;
            i += 1;
            while i < c.len() && c[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                // `\!`, `\,` and friends are spacing.
                if c.get(i).is_some_and(|x| matches!(x, '!' | ',' | ';' | ':')) {
                    i += 1;
                    continue;
                }
                return None;
            }
            out.push(Tok::Cmd(c[start..i].iter().collect()));
        } else if ch.is_ascii_alphabetic() {
            out.push(Tok::Var(ch));
            i += 1;
        } else if "+-*/^(){}[],".contains(ch) {
            out.push(Tok::Sym(ch));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// A parsed expression, evaluated under a variable assignment.
#[derive(Debug, Clone)]
enum Expr {
    Num(f64),
    Decimal(f64),
    Pi,
    Var(char),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
    Fun(&'static str, Box<Expr>),
    Root(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn eval(&self, vars: &BTreeMap<char, f64>) -> f64 {
        match self {
            Expr::Num(x) | Expr::Decimal(x) => *x,
            Expr::Pi => std::f64::consts::PI,
            Expr::Var(v) => vars.get(v).copied().unwrap_or(f64::NAN),
            Expr::Neg(e) => -e.eval(vars),
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval(vars), b.eval(vars));
                match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    '/' => a / b,
                    _ => a.powf(b),
                }
            }
            Expr::Fun(f, e) => {
                let x = e.eval(vars);
                match *f {
                    "sin" => x.sin(),
                    "cos" => x.cos(),
                    "tan" => x.tan(),
                    "ln" | "log" => x.ln(),
                    "exp" => x.exp(),
                    _ => x.sqrt(),
                }
            }
            Expr::Root(n, e) => e.eval(vars).powf(1.0 / n.eval(vars)),
        }
    }

    /// True when `pred` holds for this node or any below it.
    fn any(&self, pred: &dyn Fn(&Expr) -> bool) -> bool {
        pred(self)
            || match self {
                Expr::Neg(e) | Expr::Fun(_, e) => e.any(pred),
                Expr::Bin(_, a, b) | Expr::Root(a, b) => a.any(pred) || b.any(pred),
                _ => false,
            }
    }

    fn vars(&self, out: &mut Vec<char>) {
        match self {
            Expr::Var(v) if !out.contains(v) => out.push(*v),
            Expr::Neg(e) | Expr::Fun(_, e) => e.vars(out),
            Expr::Bin(_, a, b) | Expr::Root(a, b) => {
                a.vars(out);
                b.vars(out);
            }
            _ => {}
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, c: char) -> Option<()> {
        (self.next()? == Tok::Sym(c)).then_some(())
    }
    fn cmd_is(&self, names: &[&str]) -> bool {
        matches!(self.peek(), Some(Tok::Cmd(c)) if names.contains(&c.as_str()))
    }

    fn expr(&mut self) -> Option<Expr> {
        let mut e = self.term()?;
        while let Some(Tok::Sym(op @ ('+' | '-'))) = self.peek().cloned() {
            self.pos += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.term()?));
        }
        Some(e)
    }

    fn term(&mut self) -> Option<Expr> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Sym('*')) => '*',
                Some(Tok::Sym('/')) => '/',
                Some(Tok::Cmd(c)) if c == "cdot" || c == "times" => '*',
                Some(Tok::Cmd(c)) if c == "div" => '/',
                // Implicit product: a factor starts right here.
                Some(Tok::Num(..) | Tok::Var(_) | Tok::Sym('(' | '{')) => {
                    e = Expr::Bin('*', Box::new(e), Box::new(self.power()?));
                    continue;
                }
                Some(Tok::Cmd(c)) if c != "right" => {
                    e = Expr::Bin('*', Box::new(e), Box::new(self.power()?));
                    continue;
                }
                _ => return Some(e),
            };
            self.pos += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        match self.peek() {
            Some(Tok::Sym('-')) => {
                self.pos += 1;
                Some(Expr::Neg(Box::new(self.unary()?)))
            }
            Some(Tok::Sym('+')) => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.atom()?;
        if self.peek() != Some(&Tok::Sym('^')) {
            return Some(base);
        }
        self.pos += 1;
        // `x^2` takes one digit or letter; `x^{...}` a group; `x^-1` a signed power.
        let exp = match self.peek()? {
            Tok::Num(n, false) => {
                let digits = format!("{n}");
                self.pos += 1;
                let first: f64 = digits.chars().next()?.to_digit(10)?.into();
                let rest = &digits[1..];
                let e = Expr::Num(first);
                if rest.is_empty() {
                    e
                } else {
                    // `2^34` is 2^3·4 in LaTeX.
                    return Some(Expr::Bin(
                        '*',
                        Box::new(Expr::Bin('^', Box::new(base), Box::new(e))),
                        Box::new(Expr::Num(rest.parse().ok()?)),
                    ));
                }
            }
            Tok::Sym('-') => self.unary()?,
            _ => self.power()?,
        };
        Some(Expr::Bin('^', Box::new(base), Box::new(exp)))
    }

    fn group(&mut self) -> Option<Expr> {
        self.eat('{')?;
        let e = self.expr()?;
        self.eat('}')?;
        Some(e)
    }

    fn atom(&mut self) -> Option<Expr> {
        match self.next()? {
            Tok::Num(x, decimal) => Some(if decimal { Expr::Decimal(x) } else { Expr::Num(x) }),
            Tok::Var(v) => Some(Expr::Var(v)),
            Tok::Sym('(') => {
                let e = self.expr()?;
                self.eat(')')?;
                Some(e)
            }
            Tok::Sym('{') => {
                self.pos -= 1;
                self.group()
            }
            Tok::Cmd(c) => match c.as_str() {
                "pi" => Some(Expr::Pi),
                "frac" | "dfrac" | "tfrac" => {
                    let (a, b) = (self.group()?, self.group()?);
                    Some(Expr::Bin('/', Box::new(a), Box::new(b)))
                }
                "sqrt" => {
                    if self.peek() == Some(&Tok::Sym('[')) {
                        self.pos += 1;
                        let n = self.expr()?;
                        self.eat(']')?;
                        return Some(Expr::Root(Box::new(n), Box::new(self.group()?)));
                    }
                    Some(Expr::Fun("sqrt", Box::new(self.group()?)))
                }
                "left" => {
                    self.eat('(')?;
                    let e = self.expr()?;
                    if !self.cmd_is(&["right"]) {
                        return None;
                    }
                    self.pos += 1;
                    self.eat(')')?;
                    Some(e)
                }
                f @ ("sin" | "cos" | "tan" | "ln" | "log" | "exp") => {
                    let name = ["sin", "cos", "tan", "ln", "log", "exp"].into_iter().find(|n| *n == f)?;
                    Some(Expr::Fun(name, Box::new(self.power()?)))
                }
                _ => None,
            },
            Tok::Sym(_) => None,
        }
    }
}

fn parse(s: &str) -> Option<Expr> {
    let mut p = Parser { toks: lex(s)?, pos: 0 };
    if p.toks.is_empty() {
        return None;
    }
    let e = p.expr()?;
    // sympy's LaTeX grammar has no end-of-input rule: it reads the longest expression at the
    // start and ignores the rest, so "3,5,7" is 3 and "5)" is 5 to it (and so to lm-eval).
    match p.peek() {
        None | Some(Tok::Sym(',' | ')' | ']' | '}')) => Some(e),
        Some(_) => None,
    }
}

/// True when both strings parse and agree at every test point.
pub fn equivalent(a: &str, b: &str) -> bool {
    let (Some(x), Some(y)) = (parse(a), parse(b)) else { return false };
    let decimal = |e: &Expr| matches!(e, Expr::Decimal(_));
    let irrational = |e: &Expr| matches!(e, Expr::Pi | Expr::Fun(..) | Expr::Root(..));
    if (x.any(&decimal) || y.any(&decimal)) && (x.any(&irrational) || y.any(&irrational)) {
        return false;
    }
    let mut names = Vec::new();
    x.vars(&mut names);
    y.vars(&mut names);
    names.sort_unstable();
    (0..3).all(|trial| {
        let vars: BTreeMap<char, f64> =
            names.iter().enumerate().map(|(i, &v)| (v, 0.61 + 0.53 * i as f64 + 0.97 * trial as f64)).collect();
        let (u, v) = (x.eval(&vars), y.eval(&vars));
        u.is_finite() && v.is_finite() && (u - v).abs() <= 1e-9 * u.abs().max(v.abs()).max(1.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_in_different_forms() {
        for (a, b) in [
            ("\\frac{1}{2}", "0.5"),
            ("\\dfrac{3}{4}", "\\frac{6}{8}"),
            ("2\\sqrt{2}", "\\sqrt{8}"),
            ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
            ("\\sqrt[3]{8}", "2"),
            ("2^{10}", "1024"),
            ("x^2", "x\\cdot(x)"),
            ("2x+1", "1+x\\times2"),
            ("\\frac{\\pi}{2}", "\\frac{1}{2}\\pi"),
            ("-\\frac{2}{3}", "\\frac{-2}{3}"),
            ("\\left(3\\right)", "3"),
            ("\\sin\\pi", "0"),
            ("10^-1", "0.1"),
            // sympy reads the leading expression only.
            ("3,5,7", "3"),
            ("5)", "5"),
        ] {
            assert!(equivalent(a, b), "{a} vs {b}");
            assert!(equivalent(b, a), "{b} vs {a}");
        }
    }

    #[test]
    fn unequal_or_unparsed() {
        for (a, b) in [
            ("\\frac{1}{3}", "0.333"),
            ("x+1", "x+2"),
            ("x", "y"),
            ("(1,2)", "(1,2)"),
            ("[2,5)", "[2,5)"),
            ("\\text{A}", "\\text{A}"),
            ("", ""),
            ("1/0", "1/0"),
            ("\\sqrt{-1}", "\\sqrt{-1}"),
            // Spaces are gone after normalisation: `\cdotx` is one (unknown) command, as for sympy.
            ("x^2", "x\\cdotx"),
            ("\\sqrt{2}", "1.4142135623730951"),
            ("3.14159", "\\pi"),
        ] {
            assert!(!equivalent(a, b), "{a} vs {b}");
        }
    }
}
