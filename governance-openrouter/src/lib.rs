//! OpenRouter LlmClient and secret sources for governance pipelines
