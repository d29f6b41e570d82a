"""The paper's models (`keras_norms.models`): `build_model` factories arrive with the study."""
