from belka.models.transformer import MODELS, Belka, BelkaSpec, create_model

__all__ = ["MODELS", "Belka", "BelkaSpec", "create_model"]
