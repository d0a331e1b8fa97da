//! [`IntoInput`]: what a typed call accepts as the input of an activity or orchestrator.

/// A value accepted where an activity or orchestrator takes an input of type `T`: a `T` itself,
/// a reference to one (cloned), `&str` for `String`, and an array or slice for `Vec`.
///
/// Unlike `Into<T>`, every accepted type is unambiguous, so integer and float literals take the
/// input's type: `ctx.call_activity(step, i)` with `i` from `0..3` and `step` taking a `u32`
/// compiles.
///
/// ```
/// use durable::IntoInput;
///
/// fn input<T>(value: impl IntoInput<T>) -> T {
///     value.into_input()
/// }
/// let city: String = input("Tokyo");
/// let n: u32 = input(7);
/// let items: Vec<u8> = input([1, 2, 3]);
/// let copy: Vec<u8> = input(&items);
/// assert_eq!((city.as_str(), n, copy), ("Tokyo", 7, vec![1, 2, 3]));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an input of type `{T}`",
    label = "expected `{T}` (the input type of this activity or orchestrator)",
    note = "pass a `{T}` or a reference to one; `&str` is accepted for `String` and an array or slice for a `Vec`"
)]
pub trait IntoInput<T> {
    /// Converts the value into the input.
    fn into_input(self) -> T;
}

impl<T> IntoInput<T> for T {
    fn into_input(self) -> T {
        self
    }
}

impl<T: Clone> IntoInput<T> for &T {
    fn into_input(self) -> T {
        self.clone()
    }
}

impl IntoInput<String> for &str {
    fn into_input(self) -> String {
        self.to_owned()
    }
}

impl<T, const N: usize> IntoInput<Vec<T>> for [T; N] {
    fn into_input(self) -> Vec<T> {
        self.into()
    }
}

impl<T: Clone> IntoInput<Vec<T>> for &[T] {
    fn into_input(self) -> Vec<T> {
        self.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::IntoInput;

    fn input<T>(value: impl IntoInput<T>) -> T {
        value.into_input()
    }

    #[test]
    fn literals_take_the_input_type() {
        let mut total: u64 = 0;
        for i in 0..3 {
            total += input::<u64>(i);
        }
        assert_eq!(total, 3);
        let x: f32 = input(1.5);
        assert!((x - 1.5).abs() < f32::EPSILON);
        let none: Option<String> = input(None);
        assert_eq!(none, None);
        let slice: Vec<i8> = input(&[1_i8, 2][..]);
        assert_eq!(slice, vec![1, 2]);
    }
}
