"""A classified batch -> its routed messages: one policy decides every prompt of the batch, and a prompt in its
job's exploration sample is answered by the other arm too, as a shadow (issue 14 section 3)."""

from __future__ import annotations

from schemas.messages import PromptMessage, RoutedMessage
from workers.classifier.model import Classification
from workers.router.intake import Record
from workers.router.policy import Policy

Routed = list[tuple[Record, RoutedMessage]]


def needs_embeddings(policy: Policy) -> bool:
    """Whether a policy's decisions need each prompt's sentence embedding (then the first tier is skipped)."""
    return policy.gain is not None and policy.gain.needs_embeddings


def route_batch(
    prompts: list[tuple[Record, PromptMessage]],
    classes: list[Classification],
    policy: Policy,
    classifier_version: str,
    default_model: str,
    now: float,
) -> Routed:
    """The messages to publish, in prompt order (a shadow right after the message it shadows)."""
    out: Routed = []
    for (record, prompt), c in zip(prompts, classes, strict=True):
        decision = policy.decide(c, prompt.body.model, default_model, classifier_version, prompt.plan)
        out.append((record, RoutedMessage(prompt=prompt, route=decision, routed_at=now)))
        if prompt.plan is not None and prompt.plan.explore:
            other = policy.other_arm(c, decision, prompt.body.model, default_model)
            out.append((record, RoutedMessage(prompt=prompt, route=other, routed_at=now, shadow=True)))
    return out
