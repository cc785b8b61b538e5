//! The model catalog: for each provider and model, which durations, aspects, qualities and
//! images a request may use. Adding a model is adding a row.

use crate::spec::{Aspect, ProviderKind, Quality};

/// How many input images a model takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageRule {
    None,
    Exactly(usize),
}

/// What one model accepts. The first entry of each list is the default.
#[derive(Debug)]
pub struct ModelRule {
    pub provider: ProviderKind,
    pub model: &'static str,
    pub durations: &'static [u32],
    pub aspects: &'static [Aspect],
    pub qualities: &'static [Quality],
    pub images: ImageRule,
}

const KIE_ASPECTS: &[Aspect] = &[Aspect::Landscape, Aspect::Portrait];
const KIE_QUALITIES: &[Quality] = &[Quality::Standard, Quality::High];

const fn kie(model: &'static str, images: ImageRule) -> ModelRule {
    ModelRule {
        provider: ProviderKind::Kie,
        model,
        durations: &[10, 15],
        aspects: KIE_ASPECTS,
        qualities: KIE_QUALITIES,
        images,
    }
}

static MODELS: &[ModelRule] = &[
    kie("sora-2-text-to-video", ImageRule::None),
    kie("sora-2-pro-text-to-video", ImageRule::None),
    kie("sora-2-image-to-video", ImageRule::Exactly(1)),
    kie("sora-2-pro-image-to-video", ImageRule::Exactly(1)),
];

pub fn models_of(provider: ProviderKind) -> impl Iterator<Item = &'static ModelRule> {
    MODELS.iter().filter(move |rule| rule.provider == provider)
}

pub(crate) fn rule(provider: ProviderKind, model: &str) -> Option<&'static ModelRule> {
    models_of(provider).find(|rule| rule.model == model)
}
