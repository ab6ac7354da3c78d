"""The forms citizens sign: a land-registration declaration and a transcript application.

Every field's label and value end up, verbatim and in this order, in the text the card
signs (``moica-auth-sign/1``); choices are signed by the label the citizen saw.
"""

from __future__ import annotations

from django import forms
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

_SHARE = RegexValidator(r"^[1-9][0-9]{0,5}/[1-9][0-9]{0,5}$", _("Write the share as 1/2."))


class LandDeclarationForm(forms.Form):
    """土地登記線上聲明: the owner declares a property transaction (demo data only)."""

    parcel = forms.CharField(label=_("Land parcel"), max_length=80)
    share = forms.CharField(label=_("Share of rights"), max_length=13, validators=[_SHARE])
    cause = forms.ChoiceField(
        label=_("Cause of registration"),
        choices=[("sale", _("Sale")), ("gift", _("Gift")), ("inheritance", _("Inheritance"))],
    )
    counterparty = forms.CharField(label=_("Counterparty"), max_length=40)
    price = forms.IntegerField(label=_("Declared price (NTD)"), min_value=0, max_value=10**12)
    declaration = forms.BooleanField(
        label=_("I declare that the above is true and that I agree to this registration"),
        required=True,
    )


class TranscriptApplicationForm(forms.Form):
    """戶籍謄本申請, filed by the citizen with the certificate (申請者本人以自然人憑證辦理)."""

    scope = forms.ChoiceField(
        label=_("Transcript scope"),
        choices=[("current", _("Current household members")), ("all", _("All records"))],
    )
    purpose = forms.ChoiceField(
        label=_("Purpose"),
        choices=[("bank", _("Bank")), ("school", _("School")), ("other", _("Other"))],
    )
    copies = forms.IntegerField(label=_("Copies"), min_value=1, max_value=5, initial=1)
