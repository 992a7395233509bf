//! The engine's device-side greedy path against its host sampler, on the real SmolLM2 model: a
//! batch of plain greedy requests takes the path where the model's device picks the tokens
//! (`prom_models::cuda::argmax_rows`; on the CPU, the same argmax on the host), and asking for
//! logprobs sends the same requests through the host sampler instead. The tokens must be the
//! same, request by request, alone and batched.

mod common;

use candle_core::DType;
use common::{collect_all, config, encode, engine};
use prom_engine::{Request, SamplingParams};

const PROMPTS: [&str; 4] = [
    "The lighthouse keeper climbed the stairs every evening to light the lamp, and",
    "def fibonacci(n):",
    "Q: What is the capital of France?\nA:",
    "Once upon a time",
];

fn requests(logprobs: Option<usize>, min_tokens: usize) -> Vec<Request> {
    PROMPTS
        .iter()
        .map(|p| {
            // Stop id 0 (<|endoftext|>) gives `min_tokens` a mask even though EOS is ignored.
            let params = SamplingParams {
                max_tokens: 24,
                min_tokens,
                ignore_eos: true,
                stop_token_ids: vec![0],
                logprobs,
                ..SamplingParams::greedy()
            };
            Request::new(encode(p), params)
        })
        .collect()
}

fn tokens(reqs: Vec<Request>) -> Vec<Vec<u32>> {
    let e = engine(DType::F32, config());
    let streams = reqs.into_iter().map(|r| e.submit(r).expect("submit")).collect();
    collect_all(streams)
        .into_iter()
        .map(|o| {
            assert!(o.error.is_none(), "{:?}", o.error);
            o.tokens.into_iter().next().expect("one sequence")
        })
        .collect()
}

#[test]
fn device_greedy_equals_the_host_sampler() {
    let device = tokens(requests(None, 0));
    let host = tokens(requests(Some(0), 0));
    assert_eq!(device, host);
    // min_tokens keeps the first steps on the host (the stop-id mask), then the device takes over.
    assert_eq!(tokens(requests(None, 3)), tokens(requests(Some(0), 3)));
    assert!(device.iter().all(|t| t.len() == 24), "{device:?}");
}

#[test]
fn a_batch_mixing_device_and_host_rows_gives_each_request_its_own_tokens() {
    let host = tokens(requests(Some(0), 0));
    // Odd requests want logprobs (their rows are copied to the host), even ones do not (their
    // ids come from the device), and the first also wants prompt logprobs (all its prompt rows).
    let mut mixed = requests(None, 0);
    for r in mixed.iter_mut().skip(1).step_by(2) {
        r.params.logprobs = Some(0);
    }
    mixed[0].params.prompt_logprobs = Some(1);
    assert_eq!(tokens(mixed), host);
}
