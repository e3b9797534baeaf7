//! The money half of the budget stage: a call's worst case is reserved in the pipeline's
//! [`CostLedger`](crate::cost::CostLedger) before it is sent and settled to the real cost after
//! (see [`crate::cost`]).

use super::LlmCall;
use crate::cost::{Cost, CostReservation, ModelPrice};
use crate::error::{Error, Result};
use crate::llm::{LlmRequest, LlmResponse};

/// A reservation held for one call in flight, with the price it was computed at.
pub(super) struct Held {
    reservation: CostReservation,
    price: ModelPrice,
}

/// The price of every model `request` may be answered by (its model, else the client's
/// default, and its fallbacks): the dearest of them, component by component.
///
/// # Errors
/// [`Error::BudgetExceeded`] naming the first model whose price is unknown.
fn request_price(call: &LlmCall<'_>, request: &LlmRequest) -> Result<ModelPrice> {
    let model = request
        .model
        .as_deref()
        .unwrap_or_else(|| call.client.default_model());
    let mut price = ModelPrice::FREE;
    for m in std::iter::once(model).chain(request.fallback_models.iter().map(String::as_str)) {
        let p = call.client.price(m).ok_or_else(|| {
            Error::BudgetExceeded(format!(
                "no price is known for model {m:?} ({} client) and a money budget is set \
                 (max_cost_per_pipeline_usd / max_cost_per_agent_usd): the call is refused; \
                 give its price in the config file's price table \
                 ([prices.\"{m}\"] prompt = …, completion = … in USD per million tokens)",
                call.client.name()
            ))
        })?;
        price = price.max(p);
    }
    Ok(price)
}

/// Reserves the worst case of `request` when a money budget is set (`None` when none is).
///
/// # Errors
/// [`Error::BudgetExceeded`] when the price is unknown or a limit would be passed; the
/// ledger's failure when it cannot be reached (the call is refused: fail closed).
pub(super) async fn reserve(call: &LlmCall<'_>, request: &LlmRequest) -> Result<Option<Held>> {
    let pipeline = call.budget.pipeline();
    let (pipeline_limit, agent_limit) = pipeline.cost_limits();
    if pipeline_limit.is_none() && agent_limit.is_none() {
        return Ok(None);
    }
    let price = request_price(call, request)?;
    let worst = price.worst_case(request.estimated_prompt_tokens(), request.max_tokens);
    let reservation = pipeline
        .cost_ledger()
        .reserve(
            call.pipeline_id(),
            call.agent_id,
            worst,
            pipeline_limit,
            agent_limit,
        )
        .await?;
    Ok(Some(Held { reservation, price }))
}

/// What the call cost, for settling: the provider's own `usage.cost` when it reported one,
/// else the answering model's price (or the reserved price) for the tokens actually used.
/// A failed call: nothing when it was never sent or the provider answered with an HTTP
/// status (refused, not billed); its worst case when it was abandoned in flight or failed
/// without a provider answer (timeout, broken stream, unparseable answer: it may be billed).
fn actual_cost(call: &LlmCall<'_>, held: &Held, result: &Result<LlmResponse>, sent: bool) -> Cost {
    match result {
        Ok(r) => r.usage.cost_usd.map_or_else(
            || {
                call.client
                    .price(&r.model)
                    .unwrap_or(held.price)
                    .cost(r.usage.prompt_tokens, r.usage.completion_tokens)
            },
            Cost::from_usd,
        ),
        Err(_) if !sent => Cost::ZERO,
        Err(_) if call.abandoned() => held.reservation.amount,
        Err(Error::Llm(f)) if f.status.is_some() => Cost::ZERO,
        Err(Error::Unauthorized(_) | Error::CircuitOpen { .. } | Error::ProviderDown(_)) => {
            Cost::ZERO
        }
        Err(_) => held.reservation.amount,
    }
}

/// Settles `held` to what the call cost. A ledger failure is logged and the reservation stays
/// at its worst case (fail closed).
pub(super) async fn settle(
    call: &LlmCall<'_>,
    held: Held,
    result: &Result<LlmResponse>,
    sent: bool,
) {
    let actual = actual_cost(call, &held, result, sent);
    settle_to(call, held, actual).await;
}

/// Gives a reservation back whole (the call was refused by the token budget before it was
/// sent).
pub(super) async fn release(call: &LlmCall<'_>, held: Held) {
    settle_to(call, held, Cost::ZERO).await;
}

/// Settles `held` at `actual`; a ledger failure is logged and the reservation stays counted.
async fn settle_to(call: &LlmCall<'_>, held: Held, actual: Cost) {
    if let Err(e) = call
        .budget
        .pipeline()
        .cost_ledger()
        .settle(held.reservation, actual)
        .await
    {
        tracing::warn!(
            pipeline_id = %call.pipeline_id(),
            agent_id = %call.agent_id,
            error = %e,
            "cannot settle an LLM call's cost reservation; it stays counted at its worst case"
        );
    }
}
