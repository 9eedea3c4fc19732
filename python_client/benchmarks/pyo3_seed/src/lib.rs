//! The seed's `calculate_squares`, as a PyO3 extension module: the baseline of bench_e2e.py.
//!
//! The seed (a blog post) released the GIL and squared the list on four threads, but did not
//! compile (`pyo3::ff::threading::Scope` does not exist, `Python::acquire_gil` is gone) and lost
//! the order (every thread extended one shared `Vec`). Here each thread owns one chunk of the
//! output, so the squares come back in order with no lock, and the result is `u64`: a `u32`
//! squared does not fit in a `u32`.

use pyo3::prelude::*;

/// As in the seed: the list is cut into at most this many chunks, one scoped thread each.
const THREADS: usize = 4;

fn square_into(squares: &mut [u64], numbers: &[u32]) {
    for (square, &n) in squares.iter_mut().zip(numbers) {
        *square = u64::from(n) * u64::from(n);
    }
}

/// `numbers` squared, in order, on up to `THREADS` scoped threads (as the seed, even for a few).
fn squares_on_threads(numbers: &[u32]) -> Vec<u64> {
    let mut squares = vec![0u64; numbers.len()];
    if numbers.is_empty() {
        return squares;
    }
    let chunk = (numbers.len() + THREADS - 1) / THREADS;
    std::thread::scope(|scope| {
        for (input, output) in numbers.chunks(chunk).zip(squares.chunks_mut(chunk)) {
            scope.spawn(move || square_into(output, input));
        }
    });
    squares
}

/// The exact squares of `numbers`, computed with the GIL released.
///
/// Raises what PyO3 0.17's `Vec<u32>` extraction raises: `ValueError` for a `str` (PyO3 0.18
/// made it a `TypeError`, as my_module raises: PyO3/pyo3#2685), `TypeError` for any other
/// argument that is not a sequence or an element that is not an integer, `OverflowError` for
/// an element outside 0..=4294967295. `bytes` is a sequence of integers.
#[pyfunction]
fn calculate_squares(py: Python<'_>, numbers: Vec<u32>) -> Vec<u64> {
    py.allow_threads(|| squares_on_threads(&numbers))
}

/// `calculate_squares` without its threads: the GIL released, the squares computed on the
/// calling thread. Not in the seed; the benchmark shows with it what spawning the seed's
/// threads costs a small call and gains a big one.
#[pyfunction]
fn calculate_squares_one_thread(py: Python<'_>, numbers: Vec<u32>) -> Vec<u64> {
    py.allow_threads(|| {
        let mut squares = vec![0u64; numbers.len()];
        square_into(&mut squares, &numbers);
        squares
    })
}

#[pymodule]
fn my_module_pyo3(_py: Python<'_>, m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(calculate_squares, m)?)?;
    m.add_function(wrap_pyfunction!(calculate_squares_one_thread, m)?)?;
    Ok(())
}
